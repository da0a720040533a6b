package election

import (
	"context"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Observation is the state of an election from one revision on.
type Observation struct {
	// Leader is nil when nobody campaigns.
	Leader *Leader
	// Revision is the etcd revision at which this became the state.
	Revision int64
}

// Observe calls fn with the current state of the election, then with
// every change of leader or of the leader's proposal, in revision order,
// until ctx ends or fn returns an error (which Observe returns). It
// misses no leader: it keeps every candidate in memory and works out the
// leader after each revision's events, so even a leader that lasted one
// revision is reported. After a compaction or a lost watch it re-reads the
// candidates and goes on from there; it returns an error only when etcd
// cannot be read.
func (e *Election) Observe(ctx context.Context, fn func(Observation) error) error {
	o := &observer{fn: fn}
	for {
		resp, err := e.cli.Get(ctx, e.prefix, clientv3.WithPrefix())
		if err != nil {
			return err
		}
		cands := make(map[string]*mvccpb.KeyValue, len(resp.Kvs))
		for _, kv := range resp.Kvs {
			cands[string(kv.Key)] = kv
		}
		if err := o.emit(cands, resp.Header.Revision); err != nil {
			return err
		}
		wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
		err = o.follow(e.cli.Watch(wctx, e.prefix, clientv3.WithPrefix(), clientv3.WithRev(resp.Header.Revision+1)), cands)
		cancel()
		if err != nil {
			return err
		}
		// The watch ended (compaction, no raft leader): read again, without
		// spinning if it keeps ending.
		if !sleepCtx(ctx, 50*time.Millisecond) {
			return ctx.Err()
		}
	}
}

type observer struct {
	fn   func(Observation) error
	sent bool
	last *Leader
}

// follow applies watch events to cands, reporting the state after each
// revision. It returns nil when the watch ends (to re-read), or fn's
// error.
func (o *observer) follow(wch clientv3.WatchChan, cands map[string]*mvccpb.KeyValue) error {
	for wr := range wch {
		if wr.Err() != nil {
			return nil
		}
		for i, ev := range wr.Events {
			if ev.Type == mvccpb.DELETE {
				delete(cands, string(ev.Kv.Key))
			} else {
				cands[string(ev.Kv.Key)] = ev.Kv
			}
			// A transaction's events share a revision: judge the state
			// only after the last of them.
			if i+1 < len(wr.Events) && wr.Events[i+1].Kv.ModRevision == ev.Kv.ModRevision {
				continue
			}
			if err := o.emit(cands, ev.Kv.ModRevision); err != nil {
				return err
			}
		}
	}
	return nil
}

// emit reports the leader of cands if it differs from the last one
// reported.
func (o *observer) emit(cands map[string]*mvccpb.KeyValue, rev int64) error {
	var first *mvccpb.KeyValue
	for _, kv := range cands {
		if first == nil || kv.CreateRevision < first.CreateRevision {
			first = kv
		}
	}
	var cur *Leader
	if first != nil {
		l := fromKV(first)
		cur = &l
	}
	if o.sent && same(o.last, cur) {
		return nil
	}
	o.sent, o.last = true, cur
	return o.fn(Observation{Leader: cur, Revision: rev})
}

func same(a, b *Leader) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Key == b.Key && a.Rev == b.Rev && a.Proposal == b.Proposal
}
