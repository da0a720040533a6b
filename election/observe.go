package election

import (
	"context"
	"errors"
	"time"

	"github.com/beaconhq/beacon/internal/fanout"
	"github.com/beaconhq/beacon/internal/rpcerr"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
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
// cannot be read, or (ErrSlowObserver) when fn fell so far behind the
// election's changes that following them would mean queueing without
// bound.
//
// The observers of one election in this process share one etcd watch
// (internal/fanout), so that observers coming and going by the thousand
// never reach etcd.
func (e *Election) Observe(ctx context.Context, fn func(Observation) error) error {
	o := &observer{fn: fn}
	for {
		sub, err := fanout.For(e.cli).Subscribe(ctx, e.prefix)
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case err == nil:
			err = e.observeOnce(ctx, o, sub)
			sub.Close()
			if err != nil {
				return err
			}
		default:
			// The shared watch could not start: etcd cannot be read (no
			// raft leader, client closed), unless it was compacted under
			// the watch, which a new read gets past.
			var b *fanout.BrokenError
			if !errors.As(err, &b) || b.CompactRevision == 0 {
				return err
			}
		}
		// The watch ended (compaction, no raft leader): read again,
		// without spinning if it keeps ending.
		if !sleepCtx(ctx, 50*time.Millisecond) {
			return ctx.Err()
		}
	}
}

// ErrSlowObserver: an observer left more of the election's changes
// unread than the shared watch's bounds allow (fanout: 4,096 changes, or
// max-watch-buffer-bytes of them) and was dropped; it answers
// RESOURCE_EXHAUSTED. Observe returns it wrapped in a message naming the
// bound.
var ErrSlowObserver = rpcerr.NewNamed(codes.ResourceExhausted,
	"election: the observer left too many changes unread and was dropped; observe again")

// slowObserver is ErrSlowObserver naming the bound the observer passed.
func slowObserver(err error) error {
	var slow *fanout.SlowError
	if !errors.As(err, &slow) {
		return ErrSlowObserver
	}
	return rpcerr.Wrapf(ErrSlowObserver,
		"election: the observer left more than %s unread (%s %d) and was dropped; observe again", slow.Unread(), slow.Limit, slow.Value)
}

// observeOnce reads the candidates, then applies the feed's events after
// the read. It returns nil when the feed breaks (to re-read), or fn's,
// ctx's or etcd's error.
func (e *Election) observeOnce(ctx context.Context, o *observer, sub *fanout.Sub) error {
	// A linearizable read made after the feed was live at sub.From(): no
	// change falls between the two.
	resp, err := e.cli.Get(ctx, e.prefix, clientv3.WithPrefix())
	if err != nil {
		return err
	}
	if resp.Header.Revision < sub.From() {
		return nil // cannot happen with a linearizable read; read again
	}
	cands := make(map[string]*mvccpb.KeyValue, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		cands[string(kv.Key)] = kv
	}
	if err := o.emit(cands, resp.Header.Revision); err != nil {
		return err
	}
	after := resp.Header.Revision
	for {
		evs, err := sub.Next(ctx)
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case errors.Is(err, fanout.ErrSlow):
			return slowObserver(err)
		case err != nil:
			return nil // the feed broke: read again
		}
		if err := o.apply(evs, after, cands); err != nil {
			return err
		}
		if n := len(evs); n > 0 && evs[n-1].Kv.ModRevision > after {
			after = evs[n-1].Kv.ModRevision
		}
	}
}

type observer struct {
	fn   func(Observation) error
	sent bool
	last *Leader
}

// apply applies one batch of events above revision after to cands,
// reporting the state after each revision.
func (o *observer) apply(evs []*clientv3.Event, after int64, cands map[string]*mvccpb.KeyValue) error {
	for i, ev := range evs {
		if ev.Kv.ModRevision <= after {
			continue
		}
		if ev.Type == mvccpb.DELETE {
			delete(cands, string(ev.Kv.Key))
		} else {
			cands[string(ev.Kv.Key)] = ev.Kv
		}
		// A transaction's events share a revision, and etcd never splits
		// a revision across batches: judge the state only after the last
		// of them.
		if i+1 < len(evs) && evs[i+1].Kv.ModRevision == ev.Kv.ModRevision {
			continue
		}
		if err := o.emit(cands, ev.Kv.ModRevision); err != nil {
			return err
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
