package barrier

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

// Service implements the Barrier gRPC service for the sessions of an
// agent. Every participant lives in its Enter call, so the service runs
// nothing between calls.
type Service struct {
	beaconpb.UnimplementedBarrierServer
	cli       *clientv3.Client
	sessions  *session.Manager
	namespace string
	node      string
	max       int
	lg        *zap.Logger

	mu      sync.Mutex
	changed map[string]chan struct{} // by session id: closed at its next lease change
}

// ServiceOption configures NewService.
type ServiceOption func(*Service)

// WithNode is the agent's name, written into each participant's key
// (default none).
func WithNode(name string) ServiceOption { return func(s *Service) { s.node = name } }

// WithLogger sets the logger (default none).
func WithLogger(lg *zap.Logger) ServiceOption { return func(s *Service) { s.lg = lg } }

// WithLimit bounds a round's participants: the agent's
// max-barrier-participants (default DefaultMaxParticipants; n < 1 keeps
// it).
func WithLimit(n int) ServiceOption {
	return func(s *Service) {
		if n > 0 {
			s.max = n
		}
	}
}

// NewService serves the barriers under namespace (e.g. "/beacon/") in
// cli's cluster, for the sessions of m.
func NewService(cli *clientv3.Client, m *session.Manager, namespace string, opts ...ServiceOption) *Service {
	s := &Service{cli: cli, sessions: m, namespace: namespace, max: DefaultMaxParticipants, lg: zap.NewNop(),
		changed: map[string]chan struct{}{}}
	for _, o := range opts {
		o(s)
	}
	return s
}

func (s *Service) barrier(name string) (*Barrier, error) {
	b, err := New(s.cli, s.namespace, name, WithMaxParticipants(s.max))
	return b, rpcerr.From(err)
}

// Enter enters the session's participant, streams its progress until the
// round trips, then stays open while it is inside.
func (s *Service) Enter(req *beaconpb.BarrierEnterRequest, stream beaconpb.Barrier_EnterServer) error {
	b, err := s.barrier(req.Name)
	if err != nil {
		return err
	}
	if err := ValidateCount(int(req.Count), s.max); err != nil {
		return rpcerr.From(err)
	}
	timeout, err := timeoutField.Read(req.Timeout)
	if err != nil {
		return rpcerr.From(err)
	}
	if req.Pid < 0 {
		return rpcerr.From(&FieldError{Field: "pid", Msg: fmt.Sprintf("%d is not a process id", req.Pid)})
	}
	sess, err := s.lookup(req.SessionId)
	if err != nil {
		return err
	}
	sess.MarkHolding()
	bctx, release := s.bind(stream.Context(), sess)
	defer release()
	ectx, cancel := bctx, context.CancelFunc(func() {})
	if timeout > 0 {
		ectx, cancel = context.WithTimeout(bctx, timeout)
	}
	defer cancel()
	var last *Progress
	report := func(p Progress) {
		last = &p
		_ = stream.Send(&beaconpb.BarrierEnterEvent{State: beaconpb.BarrierState_BARRIER_STATE_WAITING,
			Round: p.Round, Count: int32(p.Count), Present: toPB(p.Present)})
	}
	// The lease is read after bind, so a lease change from here on cancels.
	e, err := b.Enter(ectx, sess.Lease(), Info{Node: s.node, Pid: req.Pid, Count: int(req.Count)}, report)
	if err == nil && ectx.Err() != nil {
		// Tripped just as the session ended or the time ran out: not in.
		b.withdraw(e.Participant)
		err = context.Cause(ectx)
	}
	if err != nil {
		return s.fail(ectx, err, func() string { return enterTimeout(req, last) })
	}
	s.lg.Debug("tripped", zap.String("barrier", req.Name), zap.Int64("round", e.Round), zap.String("lease", fmt.Sprintf("%x", int64(e.Lease))))
	if err := stream.Send(&beaconpb.BarrierEnterEvent{State: beaconpb.BarrierState_BARRIER_STATE_TRIPPED,
		Round: e.Round, Count: int32(e.Trip.Count), Present: toPB(e.Members), Key: e.Key, Rev: e.Rev,
		LeaseId: fmt.Sprintf("%x", int64(e.Lease)), Cutoff: e.Trip.Cutoff, Revision: e.Revision}); err != nil {
		return err
	}
	err = b.WaitGone(bctx, e)
	if stream.Context().Err() != nil {
		return nil // the participant hung up (it left, or it is leaving)
	}
	return s.fail(bctx, err, nil)
}

// enterTimeout is the message of an Enter whose time ran out: how many
// are missing and who is present.
func enterTimeout(req *beaconpb.BarrierEnterRequest, last *Progress) string {
	after := req.Timeout.AsDuration() // read and checked by Enter
	if last == nil {
		return fmt.Sprintf("barrier %q: timed out after %s before entering", req.Name, after)
	}
	return fmt.Sprintf("barrier %q: timed out after %s %s", req.Name, after, last)
}

// Leave takes the session's participant out of round req.Round.
func (s *Service) Leave(ctx context.Context, req *beaconpb.BarrierLeaveRequest) (*beaconpb.BarrierLeaveResponse, error) {
	b, err := s.barrier(req.Name)
	if err != nil {
		return nil, err
	}
	if err := validateRound(req.Round, "rev", req.Rev); err != nil {
		return nil, rpcerr.From(err)
	}
	sess, err := s.lookup(req.SessionId)
	if err != nil {
		return nil, err
	}
	left, err := b.Leave(ctx, req.Round, sess.Lease(), req.Rev)
	if err != nil {
		return nil, rpcerr.From(err)
	}
	return &beaconpb.BarrierLeaveResponse{Left: left}, nil
}

// WaitLeft streams the members of a tripped round still inside, until
// none is.
func (s *Service) WaitLeft(req *beaconpb.BarrierWaitLeftRequest, stream beaconpb.Barrier_WaitLeftServer) error {
	b, err := s.barrier(req.Name)
	if err != nil {
		return err
	}
	if err := validateRound(req.Round, "cutoff", req.Cutoff); err != nil {
		return rpcerr.From(err)
	}
	timeout, err := timeoutField.Read(req.Timeout)
	if err != nil {
		return rpcerr.From(err)
	}
	ctx, cancel := stream.Context(), context.CancelFunc(func() {})
	if timeout > 0 {
		ctx, cancel = context.WithTimeout(ctx, timeout)
	}
	defer cancel()
	var remaining []Participant
	err = b.WaitLeft(ctx, Trip{Round: req.Round, Cutoff: req.Cutoff}, func(ps []Participant) {
		remaining = ps
		_ = stream.Send(&beaconpb.BarrierWaitLeftEvent{Remaining: toPB(ps)})
	})
	if err != nil {
		return s.fail(ctx, err, func() string {
			return fmt.Sprintf("barrier %q: timed out after %s waiting for %d of round %d to leave: %s",
				req.Name, timeout, len(remaining), req.Round, describe(remaining))
		})
	}
	return nil
}

func validateRound(round int64, field string, v int64) error {
	if round < 1 {
		return &FieldError{Field: "round", Msg: fmt.Sprintf("%d is not a round (the round of the TRIPPED event)", round)}
	}
	if v < 1 {
		return &FieldError{Field: field, Msg: fmt.Sprintf("%d is not a revision (the %s of the TRIPPED event)", v, field)}
	}
	return nil
}

// fail maps err to a status; when ctx ended, its cause (the session
// ended, the lease changed, the timeout passed) is the reason. timedOut
// words a timeout.
func (s *Service) fail(ctx context.Context, err error, timedOut func() string) error {
	if ctx.Err() != nil {
		cause := context.Cause(ctx)
		switch {
		case errors.Is(cause, ErrLost) || errors.Is(cause, ErrSessionEnded):
			return rpcerr.From(cause)
		case errors.Is(cause, context.DeadlineExceeded) && timedOut != nil:
			return status.Error(codes.DeadlineExceeded, timedOut())
		case errors.Is(cause, context.DeadlineExceeded):
			return status.Error(codes.DeadlineExceeded, "barrier: timed out")
		case errors.Is(cause, context.Canceled):
			return status.Error(codes.Canceled, "barrier: cancelled")
		}
	}
	return rpcerr.From(err)
}

func toPB(ps []Participant) []*beaconpb.BarrierParticipant {
	out := make([]*beaconpb.BarrierParticipant, len(ps))
	for i, p := range ps {
		// Values written by other clients may be any bytes; a proto
		// string must be UTF-8.
		out[i] = &beaconpb.BarrierParticipant{Node: strings.ToValidUTF8(p.Node, "\uFFFD"), Pid: p.Pid,
			LeaseId: fmt.Sprintf("%x", int64(p.Lease)), Rev: p.Rev}
	}
	return out
}
