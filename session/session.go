// Package session is the agent's side of application sessions: each one an
// etcd lease the agent owns and keeps alive for as long as the
// application's stream to the agent lives. Everything an application holds
// (registrations, locks, leaderships, reservations) is bound to it, so an
// application's death frees them at once instead of after a TTL.
package session

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// Limits on a session's TTL, which matters only when the agent dies.
const (
	DefaultTTL = 10 * time.Second
	MaxTTL     = 24 * time.Hour
)

var (
	// ErrNotFound: no open session with that id on this agent.
	ErrNotFound = errors.New("session not found")
	// ErrClosed: the session was closed.
	ErrClosed = errors.New("session closed")
)

// Session is one lease kept alive by the agent.
type Session struct {
	ID   string
	Name string
	TTL  time.Duration

	m      *Manager
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}

	mu            sync.Mutex
	lease         clientv3.LeaseID
	onLeaseChange []func(old, new clientv3.LeaseID)
	onClose       []func()
	// holding: the session holds or contends for something, or its client
	// asked for confirmations. When the agent stops, such a session's lease
	// is left to expire, unless its client closes it in time, rather than
	// revoked under a holder that may still be acting.
	holding bool
}

// Lease is the etcd lease currently behind the session.
func (s *Session) Lease() clientv3.LeaseID {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lease
}

// Done is closed when the session has ended and its lease is revoked.
func (s *Session) Done() <-chan struct{} { return s.done }

// Context ends with the session.
func (s *Session) Context() context.Context { return s.ctx }

// OnLeaseChange registers f to run when etcd ended the lease (it expired
// during a partition) and the agent granted a new one. What was bound to
// the old lease is gone from etcd; f may write it back under the new one.
func (s *Session) OnLeaseChange(f func(old, new clientv3.LeaseID)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.onLeaseChange = append(s.onLeaseChange, f)
}

// OnClose registers f to run once the session ends.
func (s *Session) OnClose(f func()) {
	s.mu.Lock()
	closed := s.ctx.Err() != nil
	if !closed {
		s.onClose = append(s.onClose, f)
	}
	s.mu.Unlock()
	if closed {
		f()
	}
}

// Close revokes the lease, so everything bound to it is released in
// etcd at once, and ends the session.
func (s *Session) Close() { s.end(true) }

// Abandon ends the session without revoking its lease, which expires
// after its TTL. The agent abandons the sessions of holders that did not
// close in time while it stops: their deadlines, on their own clocks, pass
// before the lease can expire, so nobody else is granted what they hold
// while they may still act on it.
func (s *Session) Abandon() { s.end(false) }

func (s *Session) end(revoke bool) {
	s.mu.Lock()
	if s.ctx.Err() != nil {
		s.mu.Unlock()
		<-s.done
		return
	}
	s.cancel()
	lease := s.lease
	hooks := s.onClose
	s.onClose = nil
	s.mu.Unlock()

	if revoke {
		s.m.revoke(lease, s.ID)
	}
	s.m.forget(s)
	for _, f := range hooks {
		f()
	}
	close(s.done)
}

// MarkHolding records that the session holds (or contends for) a lock, a
// leadership or a reservation: when the agent stops, its lease is not
// revoked under a holder that may still be acting (see CloseAll).
func (s *Session) MarkHolding() {
	s.mu.Lock()
	s.holding = true
	s.mu.Unlock()
}

// Holding reports whether the session holds something or its client asked
// for confirmations.
func (s *Session) Holding() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.holding
}

// Confirm proves the session's lease alive: it sends a keepalive now and
// returns the lease and the TTL etcd set with it once etcd acknowledged
// it. Since the keepalive left after Confirm was called, the lease lives
// at least until the caller's time of asking + ttl. A lease etcd no longer
// has answers ttl 0 (with no error): what was held under it is gone.
func (s *Session) Confirm(ctx context.Context) (clientv3.LeaseID, time.Duration, error) {
	s.mu.Lock()
	s.holding = true
	lease := s.lease
	s.mu.Unlock()
	if s.ctx.Err() != nil {
		return lease, 0, ErrClosed
	}
	resp, err := s.m.confirmCli.KeepAliveOnce(ctx, lease)
	switch {
	case errors.Is(err, rpctypes.ErrLeaseNotFound):
		return lease, 0, nil
	case err != nil:
		return lease, 0, err
	case resp.TTL <= 0:
		return lease, 0, nil
	}
	return lease, time.Duration(resp.TTL) * time.Second, nil
}

// keepAlive keeps the lease alive; when etcd ends it, it grants a new one
// and tells the hooks.
func (s *Session) keepAlive() {
	backoff := 100 * time.Millisecond
	for s.ctx.Err() == nil {
		lease := s.Lease()
		ch, err := s.m.cli.KeepAlive(s.ctx, lease)
		if err == nil {
			for range ch {
				backoff = 100 * time.Millisecond
			}
		}
		if s.ctx.Err() != nil {
			return
		}
		// The keepalive ended while the session lives: either the lease
		// expired (a partition longer than the TTL) or the cluster is
		// unreachable. Check which before giving up the lease.
		if s.leaseAlive(lease) {
			s.sleep(&backoff)
			continue
		}
		newLease, err := s.m.grant(s.ctx, s.TTL)
		if err != nil {
			s.sleep(&backoff)
			continue
		}
		if testHookLeaseGranted != nil {
			testHookLeaseGranted(s, newLease)
		}
		s.mu.Lock()
		if s.ctx.Err() != nil {
			// Closed while the grant was in flight: Close revoked the old
			// lease and nothing may live on under the new one.
			s.mu.Unlock()
			s.m.revoke(newLease, s.ID)
			return
		}
		s.lease = newLease
		hooks := append([]func(old, new clientv3.LeaseID){}, s.onLeaseChange...)
		s.mu.Unlock()
		s.m.lg.Warn("session lease ended; granted a new one", zap.String("session", s.ID),
			zap.String("old", fmt.Sprintf("%x", lease)), zap.String("new", fmt.Sprintf("%x", newLease)))
		for _, f := range hooks {
			f(lease, newLease)
		}
	}
}

// testHookLeaseGranted, when set by a test, runs between the grant of a
// replacement lease and its adoption: the window a Close can fall into.
var testHookLeaseGranted func(s *Session, lease clientv3.LeaseID)

// leaseAlive asks etcd whether the lease still has time left.
func (s *Session) leaseAlive(lease clientv3.LeaseID) bool {
	ctx, cancel := context.WithTimeout(s.ctx, 2*time.Second)
	defer cancel()
	ttl, err := s.m.cli.TimeToLive(ctx, lease)
	return err == nil && ttl.TTL > 0
}

func (s *Session) sleep(backoff *time.Duration) {
	select {
	case <-s.ctx.Done():
	case <-time.After(*backoff):
	}
	if *backoff < 2*time.Second {
		*backoff *= 2
	}
}

// Manager holds this agent's open sessions.
type Manager struct {
	cli        *clientv3.Client
	confirmCli *clientv3.Client // for Confirm's keepalives
	lg         *zap.Logger

	mu       sync.Mutex
	sessions map[string]*Session
	stopping bool
	stopped  chan struct{} // closed when stopping is set
	stopWait time.Duration // how long CloseAll waits for holders
}

// ErrStopping: the agent is stopping and opens no new session.
var ErrStopping = errors.New("the agent is stopping")

// ManagerOption configures NewManager.
type ManagerOption func(*Manager)

// WithConfirmClient sends the keepalives that answer confirmations through
// c instead (a socket client of the agent's own member): each is a stream
// of its own, and a client may ask often, so they must not go through the
// in-process transport, whose streams deadlock when opened and closed
// quickly (etcd-io/etcd#18879).
func WithConfirmClient(c *clientv3.Client) ManagerOption {
	return func(m *Manager) { m.confirmCli = c }
}

// NewManager returns a manager whose leases live in cli's cluster.
func NewManager(cli *clientv3.Client, lg *zap.Logger, opts ...ManagerOption) *Manager {
	m := &Manager{cli: cli, confirmCli: cli, lg: lg, sessions: map[string]*Session{}, stopped: make(chan struct{})}
	for _, o := range opts {
		o(m)
	}
	return m
}

// Open grants a lease and keeps it alive until Close.
func (m *Manager) Open(ctx context.Context, name string, ttl time.Duration) (*Session, error) {
	if ttl == 0 {
		ttl = DefaultTTL
	}
	if ttl < time.Second || ttl > MaxTTL {
		return nil, fmt.Errorf("ttl %s is not from 1s to 24h", ttl)
	}
	lease, err := m.grant(ctx, ttl)
	if err != nil {
		return nil, err
	}
	sctx, cancel := context.WithCancel(context.Background())
	s := &Session{ID: newID(), Name: name, TTL: ttl, m: m, ctx: sctx, cancel: cancel, done: make(chan struct{}), lease: lease}
	m.mu.Lock()
	if m.stopping {
		m.mu.Unlock()
		cancel()
		m.revoke(lease, "")
		return nil, ErrStopping
	}
	m.sessions[s.ID] = s
	m.mu.Unlock()
	go s.keepAlive()
	return s, nil
}

func (m *Manager) grant(ctx context.Context, ttl time.Duration) (clientv3.LeaseID, error) {
	gctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	resp, err := m.cli.Grant(gctx, int64((ttl+time.Second-1)/time.Second))
	if err != nil {
		return 0, err
	}
	return resp.ID, nil
}

// Get returns an open session.
func (m *Manager) Get(id string) (*Session, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s, ok := m.sessions[id]
	if !ok {
		return nil, fmt.Errorf("%w: %q is not open on this agent", ErrNotFound, id)
	}
	return s, nil
}

// CloseAll ends every session and opens no new one: the agent is
// stopping, so what its applications hold must not linger for a TTL.
// Sessions whose clients hold something under their own deadlines (they
// asked for confirmations) are told through Stopping and get up to wait
// to close themselves (stopping what they run first); those still open
// then are abandoned to expire after their TTL, since their holders may
// still be acting. Every other session is revoked at once.
func (m *Manager) CloseAll(wait time.Duration) {
	m.mu.Lock()
	if !m.stopping {
		m.stopping = true
		m.stopWait = wait
		close(m.stopped)
	}
	all := make([]*Session, 0, len(m.sessions))
	for _, s := range m.sessions {
		all = append(all, s)
	}
	m.mu.Unlock()
	var wg sync.WaitGroup
	waited, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	for _, s := range all {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if !s.Holding() {
				s.Close()
				return
			}
			select {
			case <-s.done:
			case <-waited.Done():
				m.lg.Warn("a holder did not close its session while the agent stopped; its lease is left to expire after its TTL",
					zap.String("session", s.ID), zap.String("name", s.Name), zap.Duration("ttl", s.TTL))
				s.Abandon()
			}
		}()
	}
	wg.Wait()
}

// Stopping is closed when the agent starts to stop.
func (m *Manager) Stopping() <-chan struct{} { return m.stopped }

// revoke revokes a lease, bounded in time: without quorum the revoke
// cannot commit, and the agent must still be able to stop; the lease then
// expires after its TTL.
func (m *Manager) revoke(lease clientv3.LeaseID, id string) {
	ctx, cancel := context.WithTimeout(context.Background(), revokeTimeout)
	defer cancel()
	if _, err := m.cli.Revoke(ctx, lease); err != nil && !errors.Is(err, rpctypes.ErrLeaseNotFound) {
		m.lg.Warn("revoking a closed session's lease; it will expire after its TTL",
			zap.String("session", id), zap.String("lease", fmt.Sprintf("%x", lease)), zap.Error(err))
	}
}

// revokeTimeout bounds one revoke.
const revokeTimeout = 2 * time.Second

func (m *Manager) forget(s *Session) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.sessions, s.ID)
}

func newID() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b) // crypto/rand does not fail on Linux
	return hex.EncodeToString(b)
}
