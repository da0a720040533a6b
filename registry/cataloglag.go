package registry

import (
	"context"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// lagProbeEvery is how often a following catalog asks its watch how far it
// has sent everything (etcd's progress request): the answer, which comes
// after every event before it, dates the catalog's last known moment of
// being current.
const lagProbeEvery = time.Second

// lagClock measures beacon_catalog_lag_seconds: how far behind etcd the
// catalog may be. While the watch follows, 0 once it has answered the
// latest probe, else the age of the probe still unanswered; while the
// watch is down (relisting, cluster unreachable), the time since the
// catalog was last known current (its last answered probe, or relist).
type lagClock struct {
	mu        sync.Mutex
	confirmed time.Time // the catalog held everything etcd had at this time
	probeAt   time.Time // the probe awaiting its answer; zero if none
	following bool
}

func newLagClock(now time.Time) *lagClock { return &lagClock{confirmed: now} }

// probe starts a probe at now, unless one is awaiting its answer (then
// it says false, and the catalog asks again for the same one).
func (l *lagClock) probe(now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.probeAt.IsZero() {
		return false
	}
	l.probeAt = now
	return true
}

// answered: the watch has sent everything up to the probe.
func (l *lagClock) answered() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.probeAt.IsZero() {
		l.confirmed, l.probeAt = l.probeAt, time.Time{}
	}
}

// relisted: the catalog read everything at a revision etcd had at 'at' and
// follows from there.
func (l *lagClock) relisted(at time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.confirmed, l.probeAt, l.following = at, time.Time{}, true
}

// stopped: the watch broke; nothing confirms the catalog until a relist.
func (l *lagClock) stopped() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.probeAt, l.following = time.Time{}, false
}

func (l *lagClock) seconds(now time.Time) float64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case !l.following:
		return max(0, now.Sub(l.confirmed).Seconds())
	case l.probeAt.IsZero():
		return 0
	}
	return max(0, now.Sub(l.probeAt).Seconds())
}

// confirmQuiet answers a probe etcd holds back: etcd answers a progress
// request only once its revision has reached where every watch of the
// stream starts, and the catalog's watches start one past the relist's
// revision, so until the next write anywhere in the cluster the probe
// waits. If etcd's revision is still the relist's, nothing has changed
// since, and the catalog is current.
func (c *Catalog) confirmQuiet(ctx context.Context, relisted int64) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	resp, err := c.cli.Get(ctx, c.namespace+"catalog-lag-probe", clientv3.WithCountOnly())
	if err == nil && resp.Header.Revision <= relisted {
		c.lag.answered()
	}
}
