package queue

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/beaconhq/beacon/api/beaconpb"
	"github.com/beaconhq/beacon/internal/apiduration"
	"github.com/beaconhq/beacon/internal/rpcerr"
	"github.com/beaconhq/beacon/session"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Service implements the Queue gRPC service on one agent. Sessions named
// in Reserve must be open on this agent.
type Service struct {
	beaconpb.UnimplementedQueueServer
	b        *Broker
	sessions *session.Manager
}

// NewService serves b's queues; sessions resolves Reserve's session_id.
func NewService(b *Broker, sessions *session.Manager) *Service {
	return &Service{b: b, sessions: sessions}
}

// errUnknownSession: the session_id named no session open on this agent.
// The id is not repeated: error messages never carry session ids.
var errUnknownSession = status.Error(codes.NotFound, "session_id: no session with that id is open on this agent")

// session resolves a session_id.
func (s *Service) session(id string) (*session.Session, error) {
	sess, err := s.sessions.Get(id)
	if err != nil {
		return nil, errUnknownSession
	}
	return sess, nil
}

// caller is who an Ack, Nack or Extend comes from: a session (whose
// reservations alone it may touch), or nobody named (the receipt's key is
// the only proof, as for the one-shot CLI).
func (s *Service) caller(sessionID string) ([]CallOption, error) {
	if sessionID == "" {
		return nil, nil
	}
	sess, err := s.session(sessionID)
	if err != nil {
		return nil, err
	}
	return []CallOption{InSession(sess.Lease())}, nil
}

// The requests' duration fields (internal/apiduration): absent is the
// default, a present value must be within the range the broker takes.
var (
	delayField       = apiduration.Field{Name: "delay", Max: MaxDuration}
	dedupWindowField = apiduration.Field{Name: "dedup_window", Default: DefaultDedupWindow, Min: time.Second, Max: MaxDuration}
	visibilityField  = apiduration.Field{Name: "visibility", Default: DefaultVisibility, Min: time.Millisecond, Max: MaxDuration}
	waitField        = apiduration.Field{Name: "wait", Max: MaxDuration}
)

// Enqueue appends a message.
func (s *Service) Enqueue(ctx context.Context, req *beaconpb.QueueEnqueueRequest) (*beaconpb.QueueEnqueueResponse, error) {
	var opts []EnqueueOption
	delay, err := delayField.Read(req.Delay)
	if err != nil {
		return nil, rpcerr.From(err)
	}
	opts = append(opts, WithDelay(delay))
	if req.Last {
		opts = append(opts, WithLast())
	}
	if req.DedupId != "" {
		window, err := dedupWindowField.Read(req.DedupWindow)
		if err != nil {
			return nil, rpcerr.From(err)
		}
		opts = append(opts, WithDedup(req.DedupId, window))
	}
	id, dup, err := s.b.Enqueue(ctx, req.Queue, req.Payload, opts...)
	if err != nil {
		// Without quorum a push times out after etcd's request timeout:
		// say that it is the quorum, not only "deadline exceeded".
		return nil, rpcerr.FromCluster(s.b.cli, err)
	}
	return &beaconpb.QueueEnqueueResponse{Id: id, Duplicate: dup}, nil
}

// Reserve hands out the oldest ready message.
func (s *Service) Reserve(ctx context.Context, req *beaconpb.QueueReserveRequest) (*beaconpb.QueueReserveResponse, error) {
	vis, err := visibilityField.Read(req.Visibility)
	if err != nil {
		return nil, rpcerr.From(err)
	}
	wait, err := waitField.Read(req.Wait)
	if err != nil {
		return nil, rpcerr.From(err)
	}
	maxDel := DefaultMaxDeliveries
	if req.MaxDeliveries != nil {
		maxDel = int(*req.MaxDeliveries)
	}
	opts := []ReserveOption{WithVisibility(vis), WithWait(wait), WithMaxDeliveries(maxDel), WithWorker(req.WorkerPid)}
	if req.AckReceipt != "" {
		r, err := ParseReceipt(req.AckReceipt)
		if err != nil {
			var fe *FieldError
			if errors.As(err, &fe) {
				fe.Field = "ack_receipt"
			}
			return nil, rpcerr.From(err)
		}
		opts = append(opts, WithAck(r))
	}
	var sess *session.Session
	if req.SessionId != "" {
		if sess, err = s.session(req.SessionId); err != nil {
			return nil, err
		}
		sess.MarkHolding()
		opts = append(opts, WithSession(sess.Lease))
		// A wait ends with the session: its reservation could not outlive it.
		var cancel context.CancelFunc
		ctx, cancel = context.WithCancel(ctx)
		defer cancel()
		stop := context.AfterFunc(sess.Context(), cancel)
		defer stop()
	}
	d, err := s.b.Reserve(ctx, req.Queue, opts...)
	if err != nil {
		if sess != nil && sess.Context().Err() != nil && errors.Is(err, context.Canceled) {
			err = ErrSessionEnded
		}
		return nil, rpcerr.From(err)
	}
	resp := &beaconpb.QueueReserveResponse{Message: messageProto(d.Message), Receipt: d.Receipt.String(),
		Deadline: timestamppb.New(d.Deadline)}
	if d.Lease != clientv3.NoLease {
		resp.LeaseId = fmt.Sprintf("%x", d.Lease)
	}
	return resp, nil
}

// Ack removes a reserved message.
func (s *Service) Ack(ctx context.Context, req *beaconpb.QueueAckRequest) (*beaconpb.QueueAckResponse, error) {
	r, err := ParseReceipt(req.Receipt)
	if err != nil {
		return nil, rpcerr.From(err)
	}
	as, err := s.caller(req.SessionId)
	if err != nil {
		return nil, err
	}
	if err := s.b.Ack(ctx, r, as...); err != nil {
		return nil, rpcerr.From(err)
	}
	return &beaconpb.QueueAckResponse{}, nil
}

// Nack puts a reserved message back.
func (s *Service) Nack(ctx context.Context, req *beaconpb.QueueNackRequest) (*beaconpb.QueueNackResponse, error) {
	// The duration first: a bad one is named whatever the receipt.
	delay, err := delayField.Read(req.Delay)
	if err != nil {
		return nil, rpcerr.From(err)
	}
	r, err := ParseReceipt(req.Receipt)
	if err != nil {
		return nil, rpcerr.From(err)
	}
	as, err := s.caller(req.SessionId)
	if err != nil {
		return nil, err
	}
	if err := s.b.Nack(ctx, r, delay, as...); err != nil {
		return nil, rpcerr.From(err)
	}
	return &beaconpb.QueueNackResponse{}, nil
}

// Extend moves a reservation's deadline.
func (s *Service) Extend(ctx context.Context, req *beaconpb.QueueExtendRequest) (*beaconpb.QueueExtendResponse, error) {
	vis, err := visibilityField.Read(req.Visibility)
	if err != nil {
		return nil, rpcerr.From(err)
	}
	r, err := ParseReceipt(req.Receipt)
	if err != nil {
		return nil, rpcerr.From(err)
	}
	as, err := s.caller(req.SessionId)
	if err != nil {
		return nil, err
	}
	deadline, err := s.b.Extend(ctx, r, vis, as...)
	if err != nil {
		return nil, rpcerr.From(err)
	}
	return &beaconpb.QueueExtendResponse{Deadline: timestamppb.New(deadline)}, nil
}

// Stats counts a queue's messages.
func (s *Service) Stats(ctx context.Context, req *beaconpb.QueueStatsRequest) (*beaconpb.QueueStats, error) {
	var opts []StatsOption
	if req.InFlight {
		opts = append(opts, WithInFlight())
	}
	st, err := s.b.Stats(ctx, req.Queue, opts...)
	if err != nil {
		return nil, rpcerr.From(err)
	}
	return &beaconpb.QueueStats{Queue: st.Queue, Depth: uint64(st.Depth), Ready: uint64(st.Ready), InFlight: uint64(st.InFlight),
		Delayed: uint64(st.Delayed), Dead: uint64(st.Dead), OldestAge: durationpb.New(st.OldestAge), Revision: st.Revision,
		InFlightMessages: inFlightProto(st.InFlightMessages, time.Now()), InFlightMore: st.InFlightMore,
		Gate: gateStat(st.Queue, st.Gate)}, nil
}

// DeadLetters lists dead letters.
func (s *Service) DeadLetters(ctx context.Context, req *beaconpb.QueueDeadLettersRequest) (*beaconpb.QueueDeadLettersResponse, error) {
	limit := int(req.Limit)
	if limit == 0 {
		limit = 100
	}
	msgs, more, err := s.b.DeadLetters(ctx, req.Queue, limit)
	if err != nil {
		return nil, rpcerr.From(err)
	}
	resp := &beaconpb.QueueDeadLettersResponse{More: more}
	for _, m := range msgs {
		resp.Messages = append(resp.Messages, messageProto(m))
	}
	return resp, nil
}

// Redrive sends dead letters back to their queue.
func (s *Service) Redrive(ctx context.Context, req *beaconpb.QueueDeadRequest) (*beaconpb.QueueDeadResponse, error) {
	return s.handleDead(ctx, req, Redrive)
}

// PurgeDead deletes dead letters.
func (s *Service) PurgeDead(ctx context.Context, req *beaconpb.QueueDeadRequest) (*beaconpb.QueueDeadResponse, error) {
	return s.handleDead(ctx, req, Purge)
}

func (s *Service) handleDead(ctx context.Context, req *beaconpb.QueueDeadRequest, action DeadAction) (*beaconpb.QueueDeadResponse, error) {
	done, notDead, more, err := s.b.HandleDead(ctx, req.Queue, action, req.Ids, req.All)
	if err != nil {
		return nil, rpcerr.From(err)
	}
	return &beaconpb.QueueDeadResponse{Done: done, NotDead: notDead, More: more}, nil
}

// Wait returns once the queue holds count messages.
func (s *Service) Wait(ctx context.Context, req *beaconpb.QueueWaitRequest) (*beaconpb.QueueWaitResponse, error) {
	if req.Count > 1<<31 {
		return nil, status.Errorf(codes.InvalidArgument, "count: %d is too large", req.Count)
	}
	n, err := s.b.Wait(ctx, req.Queue, int(req.Count))
	if err != nil {
		return nil, rpcerr.From(err)
	}
	return &beaconpb.QueueWaitResponse{Count: uint64(n)}, nil
}

func messageProto(m Message) *beaconpb.QueueMessage {
	p := &beaconpb.QueueMessage{Queue: m.Queue, Id: m.ID, Payload: m.Payload, Deliveries: uint32(m.Deliveries),
		DedupId: m.DedupID, DeadReason: m.DeadReason, Last: m.Last}
	if !m.Enqueued.IsZero() {
		p.EnqueuedAt = timestamppb.New(m.Enqueued)
	}
	if !m.DeadAt.IsZero() {
		p.DeadAt = timestamppb.New(m.DeadAt)
	}
	return p
}
