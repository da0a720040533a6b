package barrier

import (
	"context"
	"fmt"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// wait follows the barrier from revision rev on until the round trips
// (with me in it: the result; without: again, enter the next round) or
// me's key goes.
func (b *Barrier) wait(ctx context.Context, f *follower, me Participant, view *roundView, rec openRecord, rev int64, report func(Progress)) (res Entered, again bool, err error) {
	reported := ""
	readAt := rev // the view is the state at readAt plus the events after it
	for {
		// Its own key first: a participant whose key is gone is out, even
		// if the round tripped with it (its lease ended while it was cut
		// off, say): the others count it as left already.
		if _, ok := view.keys[me.Key]; !ok {
			return Entered{}, false, fmt.Errorf("%w: %s was deleted while waiting (its lease ended)", ErrLost, me.Key)
		}
		if rec.Round < view.round {
			// The open key went (deleted by hand) while this round was
			// open: it is still the open one, and its trip must name it.
			rec.Round = view.round
		}
		if rec.Round > view.round {
			t, ok := rec.trip(view.round)
			switch {
			case !ok:
				return Entered{}, false, fmt.Errorf("%w: round %d of %q tripped, and more than %d rounds since, before this participant could read which", ErrLost, view.round, b.name, maxTrips)
			case me.Rev > t.Cutoff:
				return Entered{}, true, nil // came after the count-th: the next round
			}
			return Entered{Participant: me, Round: view.round, Trip: t, Members: view.members(t), Revision: rev}, false, nil
		}
		if report != nil {
			p := Progress{Round: view.round, Count: view.count(), Present: view.matching()}
			if s := p.String(); s != reported {
				reported = s
				report(p)
			}
		}
		var again <-chan time.Time
		if t, ok := view.full(); ok {
			// Whoever wins, the watch tells. A trip that could not be
			// written (the connection died) is tried again shortly, in
			// case no other participant can write it either.
			if err := b.trip(ctx, rec, t); err != nil && ctx.Err() == nil {
				again = time.After(100 * time.Millisecond)
			}
		}
		var wr clientv3.WatchResponse
		ok := true
		select {
		case wr, ok = <-f.ch:
		case <-again:
			continue
		}
		if !ok || wr.Err() != nil || wr.Canceled {
			if ctx.Err() != nil {
				return Entered{}, false, context.Cause(ctx)
			}
			// Compacted past, or the leader lost: read anew and go on.
			if view, rec, rev, err = b.reread(ctx, view.round); err != nil {
				return Entered{}, false, err
			}
			readAt = rev
			f.reopen(rev + 1)
			continue
		}
		round := b.roundPrefix(view.round)
		for _, ev := range wr.Events {
			if ev.Kv.ModRevision <= readAt {
				continue // in the read already (the watch was opened before it)
			}
			switch key := string(ev.Kv.Key); {
			case key == b.openKey() && ev.Type == mvccpb.DELETE:
				rec = openRecord{Round: 1}
			case key == b.openKey():
				rec = parseOpen([]*mvccpb.KeyValue{ev.Kv})
			case strings.HasPrefix(key, round):
				view.apply(ev)
			}
		}
		rev = max(rev, wr.Header.Revision)
	}
}

// reread reads the open key and round r at one revision.
func (b *Barrier) reread(ctx context.Context, r int64) (*roundView, openRecord, int64, error) {
	for {
		resp, err := b.cli.Txn(ctx).Then(clientv3.OpGet(b.openKey()), clientv3.OpGet(b.roundPrefix(r), clientv3.WithPrefix())).Commit()
		if err == nil {
			return newRoundView(r, resp.Responses[1].GetResponseRange().Kvs), parseOpen(resp.Responses[0].GetResponseRange().Kvs), resp.Header.Revision, nil
		}
		if ctx.Err() != nil {
			return nil, openRecord{}, 0, context.Cause(ctx)
		}
		// etcd unreachable for now: the session's lease decides how
		// long the participant may stay; look again shortly.
		if !sleepCtx(ctx, 100*time.Millisecond) {
			return nil, openRecord{}, 0, context.Cause(ctx)
		}
	}
}

// trip records that the open round is full: the open key moves to the
// next round, remembering the trip. It changes nothing if the round
// moved on already (another participant recorded it first).
func (b *Barrier) trip(ctx context.Context, rec openRecord, t Trip) error {
	_, err := b.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.ModRevision(b.openKey()), "=", rec.mod)).
		Then(clientv3.OpPut(b.openKey(), rec.next(t).value())).
		Commit()
	return err
}
