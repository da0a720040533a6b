package client

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/beaconhq/beacon/api/beaconpb"
	"google.golang.org/protobuf/types/known/durationpb"
)

// LockOption configures Lock.
type LockOption func(*beaconpb.LockAcquireRequest)

// LockLimit makes the lock a semaphore of n holders.
func LockLimit(n int) LockOption {
	return func(r *beaconpb.LockAcquireRequest) { r.Limit = int32(n) }
}

// LockTimeout makes the agent give up waiting after d, at most 24h
// (DeadlineExceeded); without it, or with 0, Lock waits as long as ctx
// allows.
func LockTimeout(d time.Duration) LockOption {
	return func(r *beaconpb.LockAcquireRequest) { r.Timeout = durationpb.New(d) }
}

// Lock waits for the lock name in sess and returns the grant as a hold:
// Key and Token (the fencing token, for Fenced) name it, and it is lost
// when its lease ends, when the agent reports the key gone, or when its
// deadline passes on this process's clock without a confirmation.
func (c *Client) Lock(ctx context.Context, sess *Session, name string, opts ...LockOption) (*Hold, error) {
	req := &beaconpb.LockAcquireRequest{Name: name, SessionId: sess.ID}
	for _, o := range opts {
		o(req)
	}
	lc := beaconpb.NewLockClient(c.conn)
	grant, err := lc.Acquire(ctx, req)
	if err != nil {
		return nil, err
	}
	release := func(ctx context.Context) error {
		_, err := lc.Release(ctx, &beaconpb.LockReleaseRequest{Key: grant.Key, Token: grant.Token, SessionId: sess.ID})
		return err
	}
	h, err := c.holdOf(ctx, sess, leaseOfKey(grant.Key), grant.Key, grant.Token, release)
	if err != nil {
		return nil, fmt.Errorf("lock %q: %w", name, err)
	}
	// The agent's watch of the key tells of an end the lease does not: the
	// key deleted by hand, or the agent unable to confirm it.
	wctx, cancel := context.WithCancel(context.Background())
	ws, err := lc.Watch(wctx, &beaconpb.LockWatchRequest{Key: grant.Key, Token: grant.Token})
	if err == nil {
		var ev *beaconpb.LockEvent
		if ev, err = ws.Recv(); err == nil && ev.State != beaconpb.LockState_LOCK_STATE_HELD {
			err = fmt.Errorf("%w: %s", ErrLost, ev.Reason)
		}
	}
	if err != nil {
		cancel()
		return nil, fmt.Errorf("lock %q: lost at once: %w", name, h.giveUp(ctx, err))
	}
	h.follow(func() (bool, error) {
		ev, err := ws.Recv()
		if err != nil {
			return false, fmt.Errorf("the agent can no longer confirm it: %w", err)
		}
		return true, fmt.Errorf("the agent reported it %s: %s", strings.ToLower(strings.TrimPrefix(ev.State.String(), "LOCK_STATE_")), ev.Reason)
	}, cancel)
	return h, nil
}

// holdOf makes a hold in the session's period of lease. A session that
// already moved past that lease cannot hold anything in it: the hold is
// released and an error returned.
func (c *Client) holdOf(ctx context.Context, sess *Session, lease string, key string, token int64, release func(context.Context) error) (*Hold, error) {
	p, err := sess.periodOf(ctx, lease)
	if err != nil {
		rctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = release(rctx)
		cancel()
		return nil, err
	}
	h := newHold(p, key, token, release)
	go func() { // the agent stopping ends every hold of its sessions
		select {
		case <-sess.Stopping():
			h.lose(ErrAgentStopping)
		case <-h.Lost():
		}
	}()
	return h, nil
}

// leaseOfKey is the lease id (hex) at the end of a lock or election key,
// where etcd's recipes put it.
func leaseOfKey(key string) string { return key[strings.LastIndexByte(key, '/')+1:] }
