package cluster

import (
	"context"
	"errors"
	"fmt"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
)

// MembershipLockKey serialises membership changes cluster-wide: joins
// (etcd promotes one learner at a time, and auto's voter count must not go
// stale while another host joins) and leaves (two voters leaving at once
// could each see quorum kept and together break it).
func MembershipLockKey(namespace string) string { return namespace + "cluster/join" }

// ErrMembershipLockLost: the membership lock's lease ended (it expired or
// was revoked) while a membership change held it; another host's change
// may be under way, so this one must not take another step.
var ErrMembershipLockLost = errors.New("the membership lock was lost")

// membershipLockTTL is the lease of the membership lock, in seconds: a
// crashed holder's lock ends after it.
const membershipLockTTL = 10

// WithFencedMembershipLock runs fn while holding the membership lock.
//
// The lock is a lease: a holder that stalls (a long pause, a partition)
// can lose it while fn is still running, and the next host's change can
// start. So fn gets a context that ends, with ErrMembershipLockLost as its
// cause, as soon as the lock's session ends, and each membership step fn
// takes must first pass FenceMembershipChange(ctx) and go with that
// context. etcd's member add, promote and remove cannot go in a
// transaction guarded by the lock, so a window remains: a step that passed
// the fence (a linearizable read that the lock's key still exists with its
// create revision) is sent, and the lease can end before etcd applies it.
// That window is one round trip to etcd, against the lease's TTL (10s).
func WithFencedMembershipLock(ctx context.Context, cli *clientv3.Client, namespace string, fn func(ctx context.Context) error) error {
	s, err := concurrency.NewSession(cli, concurrency.WithTTL(membershipLockTTL), concurrency.WithContext(ctx))
	if err != nil {
		return err
	}
	defer s.Close()
	mu := concurrency.NewMutex(s, MembershipLockKey(namespace))
	if err := mu.Lock(ctx); err != nil {
		return fmt.Errorf("waiting for another host's membership change to finish: %w", err)
	}
	defer func() {
		uctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = mu.Unlock(uctx) // the session's lease ends the lock anyway
	}()

	f := &fence{cli: cli, owner: mu.IsOwner(), key: mu.Key()}
	fctx, cancel := context.WithCancelCause(context.WithValue(ctx, fenceKey{}, f))
	defer cancel(nil)
	go func() {
		select {
		case <-s.Done():
			cancel(ErrMembershipLockLost)
		case <-fctx.Done():
		}
	}()
	err = fn(fctx)
	if err != nil && !errors.Is(err, ErrMembershipLockLost) && errors.Is(context.Cause(fctx), ErrMembershipLockLost) {
		err = fmt.Errorf("%w: %v", ErrMembershipLockLost, err)
	}
	return err
}

type fenceKey struct{}

// fence is the membership lock as held by one WithFencedMembershipLock.
type fence struct {
	cli   *clientv3.Client
	owner clientv3.Cmp // the lock's key exists with the create revision it was taken with
	key   string
}

// FenceMembershipChange says whether the membership change running in ctx
// may take its next step: nil if ctx comes from WithFencedMembershipLock
// and its lock is still held, checked in etcd now; ErrMembershipLockLost
// (or why it could not be checked) if not. A ctx from anywhere else is
// not fenced: nil.
func FenceMembershipChange(ctx context.Context) error {
	f, _ := ctx.Value(fenceKey{}).(*fence)
	if f == nil {
		return nil
	}
	if ctx.Err() != nil {
		return fenceErr(ctx, ctx.Err())
	}
	resp, err := f.cli.Txn(ctx).If(f.owner).Commit()
	if err != nil {
		return fenceErr(ctx, fmt.Errorf("checking the membership lock %s: %w", f.key, err))
	}
	if !resp.Succeeded {
		return fmt.Errorf("%w: its key %s is gone", ErrMembershipLockLost, f.key)
	}
	return nil
}

// fenceErr is err, or the lock's loss if that is why ctx ended.
func fenceErr(ctx context.Context, err error) error {
	if cause := context.Cause(ctx); errors.Is(cause, ErrMembershipLockLost) {
		return cause
	}
	return err
}
