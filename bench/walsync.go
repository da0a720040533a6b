package bench

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// walSyncs is a member's count of etcd WAL fsyncs and their total time,
// from its /metrics (etcd serves them on the client URL). A contended
// lock's handoffs are bound by them: every release and every enqueue is a
// raft entry the member syncs before it applies it, and on a slow disk
// the syncs are a large share of a handoff (the benchmark prints it).
type walSyncs struct {
	count   float64
	seconds float64
}

// readWALSyncs reads them from the member at cfg's first endpoint; ok is
// false when the member does not answer (the figures are then left out).
func readWALSyncs(ctx context.Context, cfg clientv3.Config) (w walSyncs, ok bool) {
	if len(cfg.Endpoints) == 0 {
		return w, false
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(cfg.Endpoints[0], "/")+"/metrics", nil)
	if err != nil {
		return w, false
	}
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg.TLS}}
	resp, err := hc.Do(req)
	if err != nil {
		return w, false
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return w, false
	}
	var seen int
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		name, value, found := strings.Cut(sc.Text(), " ")
		var dst *float64
		switch name {
		case "etcd_disk_wal_fsync_duration_seconds_count":
			dst = &w.count
		case "etcd_disk_wal_fsync_duration_seconds_sum":
			dst = &w.seconds
		default:
			continue
		}
		v, err := strconv.ParseFloat(value, 64)
		if !found || err != nil {
			return w, false
		}
		*dst = v
		seen++
	}
	return w, sc.Err() == nil && seen == 2
}

// walLoad is the WAL fsyncs done between two readings, per unit of work.
type walLoad struct {
	perOp float64       // fsyncs per operation
	each  time.Duration // mean time of one fsync
}

func walLoadOf(before, after walSyncs, ops float64) (walLoad, bool) {
	n := after.count - before.count
	if n <= 0 || ops <= 0 {
		return walLoad{}, false
	}
	return walLoad{perOp: n / ops, each: time.Duration((after.seconds - before.seconds) / n * float64(time.Second))}, true
}

// share says how much of each handoff the disk took, at rate handoffs/s.
func (l walLoad) share(rate float64) string {
	perHandoff := time.Duration(l.perOp * float64(l.each))
	return fmt.Sprintf("%.1f per handoff, %s each: %s of every %s handoff", l.perOp, l.each.Round(time.Microsecond),
		perHandoff.Round(time.Microsecond), perOp(rate))
}
