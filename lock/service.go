package lock

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/beaconhq/beacon/api/beaconpb"
	"github.com/beaconhq/beacon/internal/rpcerr"
	"github.com/beaconhq/beacon/session"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Service implements the Lock gRPC service on the agent. etcd holds the
// truth (keys under session leases); the service remembers this agent's
// grants only to tell their holders at once when a session's lease ends,
// and to refuse a session contending twice for one name.
type Service struct {
	beaconpb.UnimplementedLockServer
	cli       *clientv3.Client
	sessions  *session.Manager
	namespace string // locks live under <namespace>locks/
	node      string // named in the holder's record
	lg        *zap.Logger
	hub       *Hub // this agent's waiters share one watch per lock

	mu      sync.Mutex
	grants  map[string]*grant // by key
	pending map[string]bool   // keys with an Acquire in flight
	hooked  map[string]bool   // sessions whose end and lease change we follow

	waiting atomic.Int64  // beacon_lock_waiters
	granted atomic.Uint64 // beacon_lock_grants_total
}

type grant struct {
	key     string
	token   int64
	session string

	lost     chan struct{} // closed when the session's lease ended or it closed
	reason   string
	release  chan struct{} // made by Release, closed when it has answered
	released bool
}

// ServiceOption configures NewService.
type ServiceOption func(*Service)

// WithNode names this agent in the holder records it writes (default
// none), for operators reading etcd.
func WithNode(name string) ServiceOption { return func(s *Service) { s.node = name } }

// WithLogger sets the logger (default none).
func WithLogger(lg *zap.Logger) ServiceOption { return func(s *Service) { s.lg = lg } }

// NewService serves locks in cli's cluster for the sessions of m, under
// namespace + "locks/" (the namespace is "/beacon/" on an agent).
func NewService(cli *clientv3.Client, m *session.Manager, namespace string, opts ...ServiceOption) *Service {
	s := &Service{
		cli: cli, sessions: m, namespace: namespace, lg: zap.NewNop(),
		grants: map[string]*grant{}, pending: map[string]bool{}, hooked: map[string]bool{},
	}
	for _, o := range opts {
		o(s)
	}
	s.hub = NewHub(cli)
	return s
}

// Close ends the waiters' shared watches: waits in flight and later ones
// fail Unavailable (the agent is stopping).
func (s *Service) Close() { s.hub.Close() }

func (s *Service) prefix(name string) string { return s.namespace + "locks/" + name }

// Acquire waits for the lock; see the proto.
func (s *Service) Acquire(ctx context.Context, req *beaconpb.LockAcquireRequest) (*beaconpb.LockAcquireResponse, error) {
	return s.acquire(ctx, req, true)
}

// TryAcquire takes the lock only if it is free now.
func (s *Service) TryAcquire(ctx context.Context, req *beaconpb.LockAcquireRequest) (*beaconpb.LockAcquireResponse, error) {
	return s.acquire(ctx, req, false)
}

func (s *Service) acquire(ctx context.Context, req *beaconpb.LockAcquireRequest, wait bool) (*beaconpb.LockAcquireResponse, error) {
	timeout, err := validateAcquire(req)
	if err != nil {
		return nil, rpcerr.From(err)
	}
	sess, err := s.session(req.SessionId)
	if err != nil {
		return nil, rpcerr.From(err)
	}
	sess.MarkHolding()
	limit := max(int(req.Limit), 1)
	prefix, lease := s.prefix(req.Name), sess.Lease()
	key := Key(prefix, lease)
	if err := s.reserve(ctx, key, req.Name); err != nil {
		return nil, err
	}
	defer s.unreserve(key)
	s.hook(sess)

	// The wait ends with the call, the timeout, or the session.
	actx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	stop := context.AfterFunc(sess.Context(), func() {
		cancel(fmt.Errorf("%w: the session closed while waiting for lock %q", ErrLost, req.Name))
	})
	defer stop()
	if wait && timeout > 0 {
		var cancelT context.CancelFunc
		actx, cancelT = context.WithTimeout(actx, timeout)
		defer cancelT()
	}
	info, _ := json.Marshal(Info{Node: s.node, SessionName: sess.Name, Limit: limit})
	opts := []Option{WithLimit(limit), WithValue(string(info))}
	var l *Lock
	if wait {
		s.waiting.Add(1)
		l, err = Acquire(actx, s.cli, prefix, lease, append(opts, WithHub(s.hub))...)
		s.waiting.Add(-1)
	} else {
		l, err = TryAcquire(actx, s.cli, prefix, lease, opts...)
	}
	switch {
	case errors.Is(err, ErrLocked):
		hs, _ := Holders(ctx, s.cli, prefix, limit)
		return &beaconpb.LockAcquireResponse{Holders: holdersPB(hs)}, nil
	case err != nil && errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil:
		hctx, hcancel := context.WithTimeout(ctx, 2*time.Second)
		defer hcancel()
		hs, _ := Holders(hctx, s.cli, prefix, limit)
		return nil, status.Errorf(codes.DeadlineExceeded, "lock %q: not acquired within %s: %s", req.Name, timeout, describe(hs))
	case err != nil:
		return nil, rpcerr.FromCluster(s.cli, err) // names a lost quorum
	}
	if ctx.Err() != nil {
		// The caller gave up as the grant came: nobody would release it
		// until the session ends.
		s.releaseQuietly(l)
		return nil, rpcerr.From(ctx.Err())
	}
	if !s.addGrant(sess, l) {
		s.releaseQuietly(l)
		return nil, rpcerr.From(fmt.Errorf("%w: the session's lease %s ended while waiting for lock %q", ErrLost, leaseHex(lease), req.Name))
	}
	s.granted.Add(1)
	return &beaconpb.LockAcquireResponse{Acquired: true, Key: l.Key, Token: l.Token}, nil
}

func (s *Service) releaseQuietly(l *Lock) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = l.Release(ctx)
}

// reserve refuses a second contention of one session for one name; a
// remembered grant whose key is gone (deleted behind our back) is dropped.
func (s *Service) reserve(ctx context.Context, key, name string) error {
	s.mu.Lock()
	if s.pending[key] {
		s.mu.Unlock()
		return status.Errorf(codes.AlreadyExists, "this session is already waiting for lock %q", name)
	}
	g := s.grants[key]
	s.pending[key] = true
	s.mu.Unlock()
	if g == nil {
		return nil
	}
	held, err := Holds(ctx, s.cli, g.key, g.token)
	if err != nil || held {
		s.unreserve(key)
		if err != nil {
			return rpcerr.From(err)
		}
		return status.Errorf(codes.AlreadyExists, "this session already holds lock %q (token %d)", name, g.token)
	}
	s.mu.Lock()
	s.loseLocked(g, "its key was deleted")
	s.mu.Unlock()
	return nil
}

func (s *Service) unreserve(key string) {
	s.mu.Lock()
	delete(s.pending, key)
	s.mu.Unlock()
}

// addGrant remembers a grant, unless its session's lease has changed or
// it closed meanwhile (the hooks, which run after the change, take the
// same mutex: a grant is either refused here or marked lost there).
func (s *Service) addGrant(sess *session.Session, l *Lock) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if sess.Lease() != l.Lease || sess.Context().Err() != nil {
		return false
	}
	s.grants[l.Key] = &grant{key: l.Key, token: l.Token, session: sess.ID, lost: make(chan struct{})}
	return true
}

// hook follows a session's end and lease changes once: either means its
// locks are lost (etcd deleted or is deleting their keys).
func (s *Service) hook(sess *session.Session) {
	s.mu.Lock()
	if s.hooked[sess.ID] {
		s.mu.Unlock()
		return
	}
	s.hooked[sess.ID] = true
	s.mu.Unlock()
	id := sess.ID
	sess.OnLeaseChange(func(old, _ clientv3.LeaseID) {
		s.loseSession(id, fmt.Sprintf("the session's lease %s ended", leaseHex(old)))
	})
	sess.OnClose(func() {
		s.loseSession(id, "the session closed")
		s.mu.Lock()
		delete(s.hooked, id)
		s.mu.Unlock()
	})
}

func (s *Service) loseSession(id, reason string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, g := range s.grants {
		if g.session == id {
			s.loseLocked(g, reason)
		}
	}
}

func (s *Service) loseLocked(g *grant, reason string) {
	if s.grants[g.key] == g {
		delete(s.grants, g.key)
	}
	select {
	case <-g.lost:
	default:
		g.reason = reason
		close(g.lost)
	}
	s.lg.Debug("lock lost", zap.String("key", g.key), zap.Int64("token", g.token), zap.String("reason", reason))
}

// lookup is this agent's record of a grant, if any.
func (s *Service) lookup(key string, token int64) *grant {
	s.mu.Lock()
	defer s.mu.Unlock()
	if g := s.grants[key]; g != nil && g.token == token {
		return g
	}
	return nil
}

func holdersPB(hs []Holder) []*beaconpb.LockHolder {
	out := make([]*beaconpb.LockHolder, len(hs))
	for i, h := range hs {
		out[i] = &beaconpb.LockHolder{Key: h.Key, Token: h.Token, Node: h.Info.Node, SessionName: h.Info.SessionName}
	}
	return out
}
