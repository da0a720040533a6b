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
func (s *Session) Close() {
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

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	if _, err := s.m.cli.Revoke(ctx, lease); err != nil {
		s.m.lg.Warn("revoking a closed session's lease; it will expire after its TTL",
			zap.String("session", s.ID), zap.Error(err))
	}
	cancel()
	s.m.forget(s)
	for _, f := range hooks {
		f()
	}
	close(s.done)
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
		s.mu.Lock()
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
	cli *clientv3.Client
	lg  *zap.Logger

	mu       sync.Mutex
	sessions map[string]*Session
	stopping bool
}

// ErrStopping: the agent is stopping and opens no new session.
var ErrStopping = errors.New("the agent is stopping")

// NewManager returns a manager whose leases live in cli's cluster.
func NewManager(cli *clientv3.Client, lg *zap.Logger) *Manager {
	return &Manager{cli: cli, lg: lg, sessions: map[string]*Session{}}
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
		_, _ = m.cli.Revoke(context.Background(), lease)
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

// CloseAll closes every session, revoking their leases, and opens no new
// one: the agent is stopping, so what its applications hold must not
// linger for a TTL.
func (m *Manager) CloseAll() {
	m.mu.Lock()
	m.stopping = true
	all := make([]*Session, 0, len(m.sessions))
	for _, s := range m.sessions {
		all = append(all, s)
	}
	m.mu.Unlock()
	var wg sync.WaitGroup
	for _, s := range all {
		wg.Add(1)
		go func() { defer wg.Done(); s.Close() }()
	}
	wg.Wait()
}

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
