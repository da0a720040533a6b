package barrier

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/beaconhq/beacon/internal/rpcerr"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Progress is a waiting participant's view of its round: the
// participants that count toward it (they wait for the same count), in
// order of arrival, itself included.
type Progress struct {
	Round   int64
	Count   int
	Present []Participant
}

// Missing is how many participants the round still waits for.
func (p Progress) Missing() int { return max(p.Count-len(p.Present), 0) }

func (p Progress) String() string {
	return fmt.Sprintf("waiting for %d of %d; present: %s", p.Missing(), p.Count, describe(p.Present))
}

// Entered is a participant of a round that tripped.
type Entered struct {
	Participant
	Round int64
	Trip  Trip
	// Members are the round's members as the participant saw them when
	// it learned of the trip (a member that died by then is not listed).
	Members []Participant
	// Revision is the etcd revision at which it learned of the trip.
	Revision int64
}

// Enter puts the participant with lease in the round accepting
// participants and blocks until count participants that agree on the
// count are in it: then the round trips and Enter returns. report (may
// be nil) is told every change of who is present.
//
// A participant whose count differs from its round's gets
// ErrCountMismatch; one that finds the round over max-participants,
// ErrTooMany. A participant that entered the round after its count-th
// one (they arrived together) enters the next round instead. Whenever
// Enter fails, the participant's key is deleted, so nobody counts a
// participant that is not waiting.
func (b *Barrier) Enter(ctx context.Context, lease clientv3.LeaseID, info Info, report func(Progress)) (Entered, error) {
	if err := ValidateCount(info.Count, b.max); err != nil {
		return Entered{}, err
	}
	val, _ := json.Marshal(info)
	f, err := b.follow(ctx, b.prefix)
	for err != nil && retryable(ctx, err) {
		f, err = b.follow(ctx, b.prefix)
	}
	if err != nil {
		return Entered{}, err
	}
	defer func() { f.close() }()
	for {
		me, view, rec, rev, err := b.join(ctx, lease, string(val))
		if err != nil {
			return Entered{}, err
		}
		if err := b.admit(view, me); err != nil {
			b.withdraw(me)
			return Entered{}, err
		}
		res, again, err := b.wait(ctx, f, me, view, rec, rev, report)
		if err != nil || again {
			b.withdraw(me)
		}
		if !again {
			return res, err
		}
	}
}

// join puts the participant's key in the round the open key names, in
// one transaction with the check that the round is still open, and
// reads the round.
func (b *Barrier) join(ctx context.Context, lease clientv3.LeaseID, val string) (_ Participant, _ *roundView, _ openRecord, _ int64, err error) {
	unsure := "" // a key whose put may or may not have happened
	defer func() {
		if err != nil && unsure != "" {
			b.drop(unsure)
		}
	}()
	for {
		resp, err := b.cli.Get(ctx, b.openKey())
		if err != nil {
			if retryable(ctx, err) {
				continue
			}
			return Participant{}, nil, openRecord{}, 0, err
		}
		rec := parseOpen(resp.Kvs)
		key := b.Key(rec.Round, lease)
		if unsure != "" && unsure != key {
			// An earlier put, cut short, may have entered a round that
			// has tripped since: take it out rather than leave a member
			// nobody waits with.
			if _, err := b.cli.Delete(ctx, unsure); err != nil {
				if retryable(ctx, err) {
					continue
				}
				return Participant{}, nil, openRecord{}, 0, err
			}
			unsure = ""
		}
		tr, err := b.cli.Txn(ctx).
			If(clientv3.Compare(clientv3.ModRevision(b.openKey()), "=", rec.mod)).
			Then(clientv3.OpPut(key, val, clientv3.WithLease(lease)), clientv3.OpGet(b.roundPrefix(rec.Round), clientv3.WithPrefix())).
			Commit()
		if err != nil {
			if retryable(ctx, err) {
				unsure = key // putting it again is the same put
				continue
			}
			return Participant{}, nil, openRecord{}, 0, leaseErr(err, lease)
		}
		if !tr.Succeeded {
			continue // the round tripped between the read and the put: the next one is open
		}
		view := newRoundView(rec.Round, tr.Responses[1].GetResponseRange().Kvs)
		me, ok := view.keys[key]
		if !ok {
			return Participant{}, nil, openRecord{}, 0, fmt.Errorf("%w: %s vanished as it entered", ErrLost, key)
		}
		return me, view, rec, tr.Header.Revision, nil
	}
}

// retryable reports whether a call that failed with err should be made
// again, after a pause: the connection to the member died under it
// (Unavailable; etcd's client moves to another member), and ctx lives.
// A participant waits as long as its session lets it; the session's
// lease bounds how long a cut-off agent can keep it.
func retryable(ctx context.Context, err error) bool {
	if ctx.Err() != nil || status.Code(err) != codes.Unavailable {
		return false
	}
	return sleepCtx(ctx, 100*time.Millisecond)
}

// admit refuses a participant whose count is not its round's, and one
// that finds its round over the bound.
func (b *Barrier) admit(view *roundView, me Participant) error {
	if n := view.count(); n != me.Count {
		return rpcerr.Wrapf(ErrCountMismatch, "barrier %q: count %d does not match count %d of the participants already waiting in round %d (%s)",
			b.name, me.Count, n, view.round, describe(view.matching()))
	}
	if len(view.keys) > b.max {
		return rpcerr.Wrapf(ErrTooMany, "barrier %q: round %d already holds %d participants, this agent's limit (max-barrier-participants %d)",
			b.name, view.round, len(view.keys)-1, b.max)
	}
	return nil
}

// drop deletes key, a put of this participant's whose outcome is
// unknown, when Enter gives up. Like withdraw, it outlives the caller's
// context.
func (b *Barrier) drop(key string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, _ = b.cli.Delete(ctx, key)
}

// withdraw deletes a participant that Enter gives up, if it is still the
// same key. It runs even when the caller's context has ended; if etcd is
// unreachable the key goes with its lease.
func (b *Barrier) withdraw(p Participant) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, _ = b.remove(ctx, p.Key, p.Rev)
}

// leaseErr turns etcd's "lease not found" into ErrLost.
func leaseErr(err error, lease clientv3.LeaseID) error {
	if errors.Is(err, rpctypes.ErrLeaseNotFound) {
		return fmt.Errorf("%w: lease %x has ended", ErrLost, int64(lease))
	}
	return err
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
