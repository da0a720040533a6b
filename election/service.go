package election

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/beaconhq/beacon/api/beaconpb"
	"github.com/beaconhq/beacon/internal/rpcerr"
	"github.com/beaconhq/beacon/session"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Service implements the Election gRPC service. Every candidacy and
// leadership is bound to a session of this agent: it campaigns with the
// session's lease, and ends when the session ends or its lease changes.
type Service struct {
	beaconpb.UnimplementedElectionServer
	cli       *clientv3.Client
	sessions  *session.Manager
	namespace string
	lg        *zap.Logger

	mu      sync.Mutex
	changed map[string]chan struct{} // by session id: closed at its next lease change
	led     map[string]string        // leaderships won here (beacon_elections_led): key → session id
}

// Option configures NewService.
type Option func(*Service)

// WithLogger sets the logger (default none).
func WithLogger(lg *zap.Logger) Option { return func(s *Service) { s.lg = lg } }

// NewService serves elections in cli's cluster for the sessions of m,
// under namespace + "elections/" (the namespace is "/beacon/" on an agent).
func NewService(cli *clientv3.Client, m *session.Manager, namespace string, opts ...Option) *Service {
	s := &Service{cli: cli, sessions: m, namespace: namespace, lg: zap.NewNop(), changed: map[string]chan struct{}{}, led: map[string]string{}}
	for _, o := range opts {
		o(s)
	}
	return s
}

// Campaign blocks until the session leads, the timeout passes, or the
// session ends or loses its lease.
func (s *Service) Campaign(ctx context.Context, req *beaconpb.ElectionCampaignRequest) (*beaconpb.ElectionCampaignResponse, error) {
	e, err := New(s.cli, s.namespace, req.Name)
	if err != nil {
		return nil, rpcerr.From(err)
	}
	if err := ValidateProposal(req.Proposal); err != nil {
		return nil, rpcerr.From(err)
	}
	timeout, err := timeoutField.Read(req.Timeout)
	if err != nil {
		return nil, rpcerr.From(err)
	}
	sess, err := s.session(req.SessionId, false)
	if err != nil {
		return nil, err
	}
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	bctx, release := s.bind(ctx, sess)
	defer release()
	// The lease is read after bind, so a lease change from here on cancels.
	l, err := e.Campaign(bctx, sess.Lease(), req.Proposal)
	if err == nil && bctx.Err() != nil {
		// Won just as the session ended or lost its lease: not a win.
		e.withdraw(l)
		err = bctx.Err()
	}
	if err != nil {
		return nil, s.fail(bctx, err, "campaign")
	}
	s.won(l.Key, sess.ID)
	s.lg.Debug("elected", zap.String("election", req.Name), zap.String("lease", fmt.Sprintf("%x", int64(l.Lease))), zap.Int64("rev", l.Rev))
	return &beaconpb.ElectionCampaignResponse{Leader: toPB(req.Name, l)}, nil
}

// Proclaim changes the proposal of the session's leadership.
func (s *Service) Proclaim(ctx context.Context, req *beaconpb.ElectionProclaimRequest) (*beaconpb.ElectionProclaimResponse, error) {
	e, sess, l, err := s.leadership(req.Name, req.SessionId, req.Rev, true)
	if err != nil {
		return nil, err
	}
	if err := ValidateProposal(req.Proposal); err != nil {
		return nil, rpcerr.From(err)
	}
	bctx, release := s.bind(ctx, sess)
	defer release()
	if l, err = e.Check(bctx, l); err == nil {
		l, err = e.Proclaim(bctx, l, req.Proposal)
	}
	if errors.Is(err, ErrLost) || errors.Is(err, ErrNotLeader) {
		err = e.refuseOthers(bctx, req.Rev, l.Lease, err)
	}
	if err != nil {
		return nil, s.fail(bctx, err, "proclaim")
	}
	return &beaconpb.ElectionProclaimResponse{Leader: toPB(req.Name, l)}, nil
}

// Resign ends the session's leadership.
func (s *Service) Resign(ctx context.Context, req *beaconpb.ElectionResignRequest) (*beaconpb.ElectionResignResponse, error) {
	e, _, l, err := s.leadership(req.Name, req.SessionId, req.Rev, true)
	if err != nil {
		return nil, err
	}
	ok, err := e.Resign(ctx, l)
	if err == nil {
		s.ended(l.Key)
	}
	if err == nil && !ok {
		err = e.refuseOthers(ctx, req.Rev, l.Lease, nil)
	}
	if err != nil {
		return nil, rpcerr.From(err)
	}
	return &beaconpb.ElectionResignResponse{Resigned: ok}, nil
}

// Leader reads the current leader.
func (s *Service) Leader(ctx context.Context, req *beaconpb.ElectionLeaderRequest) (*beaconpb.ElectionLeaderResponse, error) {
	e, err := New(s.cli, s.namespace, req.Name)
	if err != nil {
		return nil, rpcerr.From(err)
	}
	l, rev, err := e.Leader(ctx)
	if err != nil {
		return nil, rpcerr.From(err)
	}
	return &beaconpb.ElectionLeaderResponse{Leader: toPB(req.Name, l), Revision: rev}, nil
}

// Observe streams the leader and its changes.
func (s *Service) Observe(req *beaconpb.ElectionObserveRequest, stream beaconpb.Election_ObserveServer) error {
	e, err := New(s.cli, s.namespace, req.Name)
	if err != nil {
		return rpcerr.From(err)
	}
	err = e.Observe(stream.Context(), func(o Observation) error {
		ev := &beaconpb.ElectionObserveEvent{Revision: o.Revision}
		if o.Leader != nil {
			ev.Leader = toPB(req.Name, *o.Leader)
		}
		return stream.Send(ev)
	})
	return rpcerr.From(err)
}

// WatchLeadership confirms the session's leadership, then ends when it
// is lost.
func (s *Service) WatchLeadership(req *beaconpb.ElectionWatchLeadershipRequest, stream beaconpb.Election_WatchLeadershipServer) error {
	e, sess, l, err := s.leadership(req.Name, req.SessionId, req.Rev, false)
	if err != nil {
		return err
	}
	bctx, release := s.bind(stream.Context(), sess)
	defer release()
	if l, err = e.Check(bctx, l); err != nil {
		return s.fail(bctx, err, "watch leadership")
	}
	if err := stream.Send(&beaconpb.ElectionWatchLeadershipEvent{Leader: toPB(req.Name, l)}); err != nil {
		return err
	}
	// Confirming every TTL/6 tells a leader cut off from the cluster that
	// it lost at most TTL/3 after the last confirmation, while its lease
	// lives at least 2/3 TTL more there (the agent renews it every TTL/3).
	err = e.WaitLost(bctx, l, sess.TTL/6)
	if errors.Is(err, ErrLost) {
		// Lost as far as the leader is told: make it so in etcd too (a
		// no-op if the key is gone), so it cannot come back to the same
		// term unannounced. In the background: telling the leader must
		// not wait on a cluster that may be unreachable.
		go e.withdraw(l)
		s.ended(l.Key)
	}
	if stream.Context().Err() != nil {
		return nil // the leader hung up
	}
	s.lg.Debug("leadership lost", zap.String("election", req.Name), zap.String("lease", fmt.Sprintf("%x", int64(l.Lease))), zap.Error(err))
	return s.fail(bctx, err, "watch leadership")
}

// leadership validates a request about a session's leadership and returns
// it as etcd should hold it: the key of the session's current lease, at
// rev. After a lease change that key is not at rev, so it reads as lost.
// changes: the call changes the leadership (Proclaim, Resign).
func (s *Service) leadership(name, sessionID string, rev int64, changes bool) (*Election, *session.Session, Leader, error) {
	e, err := New(s.cli, s.namespace, name)
	if err != nil {
		return nil, nil, Leader{}, rpcerr.From(err)
	}
	if err := validateRev(rev); err != nil {
		return nil, nil, Leader{}, rpcerr.From(err)
	}
	sess, err := s.session(sessionID, changes)
	if err != nil {
		return nil, nil, Leader{}, err
	}
	lease := sess.Lease()
	return e, sess, Leader{Key: e.Key(lease), Rev: rev, Lease: lease}, nil
}

// session looks the session up (see lookup) and marks it a holder.
func (s *Service) session(id string, changes bool) (*session.Session, error) {
	sess, err := s.lookup(id, changes)
	if err != nil {
		return nil, err
	}
	sess.MarkHolding()
	return sess, nil
}

// bind returns a context that also ends when the session ends (cause
// ErrSessionEnded) or its lease changes (cause ErrLost).
func (s *Service) bind(ctx context.Context, sess *session.Session) (context.Context, context.CancelFunc) {
	changed := s.leaseChanged(sess)
	bctx, cancel := context.WithCancelCause(ctx)
	stop := context.AfterFunc(sess.Context(), func() {
		cancel(fmt.Errorf("%w: the session ended", ErrSessionEnded))
	})
	go func() {
		select {
		case <-changed:
			cancel(fmt.Errorf("%w: the session's lease ended", ErrLost))
		case <-bctx.Done():
		}
	}()
	return bctx, func() { stop(); cancel(context.Canceled) }
}

// leaseChanged returns a channel closed at the session's next lease
// change. One hook per session serves all its calls.
func (s *Service) leaseChanged(sess *session.Session) <-chan struct{} {
	s.mu.Lock()
	ch, ok := s.changed[sess.ID]
	if !ok {
		ch = make(chan struct{})
		s.changed[sess.ID] = ch
	}
	s.mu.Unlock()
	if !ok {
		sess.OnLeaseChange(func(_, _ clientv3.LeaseID) {
			s.mu.Lock()
			if old, ok := s.changed[sess.ID]; ok {
				close(old)
				s.changed[sess.ID] = make(chan struct{})
			}
			s.forgetLocked(sess.ID)
			s.mu.Unlock()
		})
		sess.OnClose(func() {
			s.mu.Lock()
			delete(s.changed, sess.ID)
			s.forgetLocked(sess.ID)
			s.mu.Unlock()
		})
	}
	return ch
}

// fail maps err to a status; when the bound context ended, its cause (the
// session ended, the lease changed, the timeout passed) is the reason.
func (s *Service) fail(bctx context.Context, err error, what string) error {
	if bctx.Err() != nil {
		cause := context.Cause(bctx)
		switch {
		case isLost(cause):
			return rpcerr.From(cause)
		case errors.Is(cause, context.DeadlineExceeded):
			return status.Errorf(codes.DeadlineExceeded, "%s: timed out", what)
		case errors.Is(cause, context.Canceled):
			return status.Errorf(codes.Canceled, "%s: cancelled", what)
		}
	}
	return rpcerr.From(err)
}

func toPB(name string, l Leader) *beaconpb.ElectionLeader {
	// Keys and values written by other clients (etcdctl) may be any bytes;
	// a proto string must be UTF-8.
	return &beaconpb.ElectionLeader{Name: name, Key: strings.ToValidUTF8(l.Key, "\uFFFD"), Rev: l.Rev,
		LeaseId: fmt.Sprintf("%x", int64(l.Lease)), Proposal: strings.ToValidUTF8(l.Proposal, "\uFFFD"), ModRevision: l.ModRev}
}
