package session

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// Revokes are what frees a dead session's holdings at once, so a failed
// one is retried until etcd has it. A burst of them (a client closing
// thousands of sessions at once) once made etcd answer "too many requests"
// to thousands, and the leases, left alone, lived on for their TTL with
// the locks they held. The retries are bounded by the lease's own TTL:
// the keepalive stopped before the first try, so after that the lease has
// expired anyway.
const (
	// revokeTimeout bounds one try: without quorum it cannot commit.
	revokeTimeout = 2 * time.Second
	// maxRevokesInFlight bounds the revokes the agent has at etcd at
	// once, so that a burst does not itself overload etcd.
	maxRevokesInFlight = 64
	// A failed revoke is tried again after a jittered backoff between
	// these.
	minRevokeBackoff = 50 * time.Millisecond
	maxRevokeBackoff = 2 * time.Second
)

// errClientClosed: the agent's etcd client is closed (the agent stopped);
// the lease is left to its TTL.
var errClientClosed = errors.New("the etcd client is closed")

// revoke revokes a lease that was kept alive with ttl. The first try runs
// before it returns, so that in the usual case what the lease held is
// free by then; if it fails, the tries go on in the background (the
// agent must still be able to stop without quorum) until one succeeds,
// etcd no longer has the lease, the client closes, or ttl has passed.
func (m *Manager) revoke(lease clientv3.LeaseID, id string, ttl time.Duration) {
	deadline := time.Now().Add(ttl)
	// The first try, slot wait included, takes at most revokeTimeout:
	// a burst of closes without quorum must not hold the agent's stop.
	err := m.revokeOnce(lease, earliest(deadline, time.Now().Add(revokeTimeout)))
	if err == nil || errors.Is(err, errClientClosed) {
		m.revokeGaveUp(lease, id, err)
		return
	}
	go func() {
		m.revokeGaveUp(lease, id, m.retryRevoke(lease, deadline, err))
	}()
}

// retryRevoke tries again after a backoff until a try succeeds or the
// deadline passes; it returns the last error, nil once revoked.
func (m *Manager) retryRevoke(lease clientv3.LeaseID, deadline time.Time, err error) error {
	backoff := minRevokeBackoff
	for tries := 1; ; tries++ {
		// Full jitter: a burst of failed revokes must not come back at
		// etcd all at once.
		wait := time.Duration(rand.Int64N(int64(backoff))) + backoff/2
		if time.Now().Add(wait).After(deadline) {
			return fmt.Errorf("%w (%d tries; the lease expires by its TTL)", err, tries)
		}
		select {
		case <-time.After(wait):
		case <-m.cli.Ctx().Done():
			return errClientClosed
		}
		if err = m.revokeOnce(lease, deadline); err == nil || errors.Is(err, errClientClosed) {
			return err
		}
		backoff = min(2*backoff, maxRevokeBackoff)
	}
}

// revokeOnce is one try, once a slot of maxRevokesInFlight is free, all
// before deadline. A lease etcd no longer has counts as revoked.
func (m *Manager) revokeOnce(lease clientv3.LeaseID, deadline time.Time) error {
	ctx, cancel := context.WithDeadline(m.cli.Ctx(), deadline)
	defer cancel()
	select {
	case m.revokeSlots <- struct{}{}:
		defer func() { <-m.revokeSlots }()
	case <-ctx.Done():
		if m.cli.Ctx().Err() != nil {
			return errClientClosed
		}
		return fmt.Errorf("waiting for one of %d revoke slots: %w", maxRevokesInFlight, ctx.Err())
	}
	tctx, tcancel := context.WithTimeout(ctx, revokeTimeout)
	defer tcancel()
	_, err := m.cli.Revoke(tctx, lease)
	switch {
	case err == nil, errors.Is(err, rpctypes.ErrLeaseNotFound):
		return nil
	case m.cli.Ctx().Err() != nil:
		return errClientClosed
	}
	return err
}

// revokeGaveUp logs a revoke that did not happen.
func (m *Manager) revokeGaveUp(lease clientv3.LeaseID, id string, err error) {
	if err == nil {
		return
	}
	m.lg.Warn("could not revoke a closed session's lease; it will expire after its TTL",
		zap.String("lease", fmt.Sprintf("%x", lease)), zap.Error(err))
}

func earliest(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}
