package queue

import (
	"context"
	"encoding/json"
	"errors"
	"sort"
	"strconv"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// MaxInFlightListed bounds Stats' in-flight listing, so that an answer
// stays well within a gRPC message; InFlightMore says when more are in
// flight.
const MaxInFlightListed = 1000

// InFlight is a message reserved with its visibility deadline ahead: who
// holds it, since when, and how far it has got.
type InFlight struct {
	ID         string
	Node       string // the agent it was reserved through
	Pid        uint32 // as its client declared it; 0 when none was given
	Reserved   time.Time
	Deadline   time.Time
	Deliveries int
	Progress   *Progress // its holder's last report; nil before the first
}

// StatsOption configures Stats.
type StatsOption func(*statsOpts)

type statsOpts struct{ inFlight bool }

// WithInFlight makes Stats list the in-flight messages too, with their
// workers' progress reports.
func WithInFlight() StatsOption { return func(o *statsOpts) { o.inFlight = true } }

// inFlightListing gathers the active reservations of one Stats read.
type inFlightListing struct {
	held []heldRes
}

type heldRes struct {
	seq    uint64
	r      reservation
	create int64
}

func (l *inFlightListing) add(seq uint64, r reservation, create int64) {
	l.held = append(l.held, heldRes{seq: seq, r: r, create: create})
}

// listed picks the reservations the listing shows: those with their
// message, in id order, at most MaxInFlightListed; and whether there are
// more.
func (l *inFlightListing) listed(msgs map[uint64]meta) ([]heldRes, bool) {
	sort.Slice(l.held, func(i, j int) bool { return l.held[i].seq < l.held[j].seq })
	var out []heldRes
	for _, h := range l.held {
		if _, ok := msgs[h.seq]; !ok {
			continue // a reservation without its message: not in flight
		}
		if len(out) == MaxInFlightListed {
			return out, true
		}
		out = append(out, h)
	}
	return out, false
}

// readReports reads, at revision rev (the listing's), the reports of the
// listed reservations: the status keys from the first listed id to the
// last, not the queue's every report (up to 6 KiB of JSON each: a queue
// of 100k reports would be 600 MB read for 1,000 shown). After a
// compaction past rev it reads the current ones; a report is shown only
// with the reservation it names (finish), so a newer read shows nothing
// wrong.
func (b *Broker) readReports(ctx context.Context, k keys, listed []heldRes, rev int64) ([]*mvccpb.KeyValue, error) {
	if len(listed) == 0 {
		return nil, nil
	}
	from, to := k.status(listed[0].seq), k.status(listed[len(listed)-1].seq)+"\x00"
	resp, err := b.cli.Get(ctx, from, clientv3.WithRange(to), clientv3.WithRev(rev))
	if errors.Is(err, rpctypes.ErrCompacted) {
		resp, err = b.cli.Get(ctx, from, clientv3.WithRange(to))
	}
	if err != nil {
		return nil, err
	}
	return resp.Kvs, nil
}

// finish pairs each listed reservation with its message and its report.
// A report counts only if it names the reservation's create revision: one
// left by an earlier reservation of the message is not shown.
func finish(listed []heldRes, msgs map[uint64]meta, status []*mvccpb.KeyValue) []InFlight {
	reports := map[uint64]progressRecord{}
	for _, kv := range status {
		seq, ok := seqOf(kv.Key)
		var p progressRecord
		if ok && json.Unmarshal(kv.Value, &p) == nil {
			reports[seq] = p
		}
	}
	out := make([]InFlight, 0, len(listed))
	for _, h := range listed {
		m := msgs[h.seq]
		f := InFlight{ID: strconv.FormatUint(h.seq, 10), Node: h.r.Node, Pid: h.r.Pid,
			Reserved: unixTime(h.r.Reserved), Deadline: unixTime(h.r.Deadline), Deliveries: int(m.Deliveries)}
		if p, ok := reports[h.seq]; ok && p.Rev == h.create {
			f.Progress = &Progress{Percent: int(p.Percent), Message: p.Message, At: unixTime(p.At)}
		}
		out = append(out, f)
	}
	return out
}
