package barrier

import (
	"context"
	"fmt"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Leave deletes the participant's key of round r (created at rev), so
// that the others' WaitLeft stop counting it. It reports false if the
// key had gone already (its lease ended: it left by dying). The last
// one out deletes the open key, so that a barrier nobody uses keeps
// nothing in etcd.
func (b *Barrier) Leave(ctx context.Context, r int64, lease clientv3.LeaseID, rev int64) (bool, error) {
	left, err := b.remove(ctx, b.Key(r, lease), rev)
	if err != nil {
		return false, err
	}
	b.tidy(ctx)
	return left, nil
}

// remove deletes key if it is still the one created at rev.
func (b *Barrier) remove(ctx context.Context, key string, rev int64) (bool, error) {
	resp, err := b.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(key), "=", rev)).
		Then(clientv3.OpDelete(key)).
		Commit()
	if err != nil {
		return false, err
	}
	return resp.Succeeded, nil
}

// tidy deletes the open key when no participant of any round is left,
// in one transaction with that check. A barrier whose last participant
// died keeps its open key (a few hundred bytes) until it is used again.
func (b *Barrier) tidy(ctx context.Context) {
	resp, err := b.cli.Get(ctx, b.openKey())
	if err != nil || len(resp.Kvs) == 0 {
		return
	}
	// A range compare holds for every key in the range, so it holds for
	// an empty range: create revision 0 means "no key at all".
	_, _ = b.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.ModRevision(b.openKey()), "=", resp.Kvs[0].ModRevision),
			clientv3.Compare(clientv3.CreateRevision(b.roundsPrefix()), "=", 0).WithPrefix()).
		Then(clientv3.OpDelete(b.openKey())).
		Commit()
}

// WaitGone blocks while the entered participant's key exists, and
// returns ErrLost when it is deleted (left, or its lease ended); other
// errors come from the context.
func (b *Barrier) WaitGone(ctx context.Context, e Entered) error {
	for {
		resp, err := b.cli.Get(ctx, e.Key)
		if err != nil {
			if ctx.Err() != nil {
				return context.Cause(ctx)
			}
			if !sleepCtx(ctx, 100*time.Millisecond) {
				return context.Cause(ctx)
			}
			continue
		}
		if len(resp.Kvs) == 0 || resp.Kvs[0].CreateRevision != e.Rev {
			return fmt.Errorf("%w: %s was deleted (its lease ended)", ErrLost, e.Key)
		}
		wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
		for wr := range b.cli.Watch(wctx, e.Key, clientv3.WithRev(resp.Header.Revision+1), clientv3.WithFilterPut()) {
			if wr.Err() != nil {
				break
			}
			if len(wr.Events) > 0 {
				cancel()
				return fmt.Errorf("%w: %s was deleted (its lease ended)", ErrLost, e.Key)
			}
		}
		cancel()
		if ctx.Err() != nil {
			return context.Cause(ctx)
		}
	}
}

// WaitLeft blocks until every member of the trip t is gone from its
// round: left, or removed with its lease. report (may be nil) is told
// who remains, first at once and then at every change. Like Enter, it
// watches from before it reads, so the last one out is seen at once.
func (b *Barrier) WaitLeft(ctx context.Context, t Trip, report func([]Participant)) error {
	for {
		f, err := b.follow(ctx, b.roundPrefix(t.Round), clientv3.WithFilterPut())
		if err != nil {
			if ctx.Err() != nil {
				return context.Cause(ctx)
			}
			if !sleepCtx(ctx, 100*time.Millisecond) {
				return context.Cause(ctx)
			}
			continue
		}
		done, err := b.followLeaving(ctx, f, t, report)
		f.close()
		if done || err != nil {
			return err
		}
	}
}

// followLeaving reads who of t's members remains and applies f's deletes
// until none does; false (and no error) when etcd could not be read or
// the watch broke, and the caller should look anew.
func (b *Barrier) followLeaving(ctx context.Context, f *follower, t Trip, report func([]Participant)) (bool, error) {
	resp, err := b.cli.Get(ctx, b.roundPrefix(t.Round), clientv3.WithPrefix(), clientv3.WithMaxCreateRev(t.Cutoff))
	if err != nil {
		if ctx.Err() != nil {
			return false, context.Cause(ctx)
		}
		return false, nil
	}
	remaining := newRoundView(t.Round, resp.Kvs)
	for {
		if report != nil {
			report(remaining.sorted())
		}
		if len(remaining.keys) == 0 {
			return true, nil
		}
		wr, ok := <-f.ch
		if !ok || wr.Err() != nil || wr.Canceled {
			if ctx.Err() != nil {
				return false, context.Cause(ctx)
			}
			return false, nil
		}
		for _, ev := range wr.Events {
			if ev.Type == mvccpb.DELETE && ev.Kv.ModRevision > resp.Header.Revision {
				delete(remaining.keys, string(ev.Kv.Key))
			}
		}
	}
}
