package session

import (
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/beaconhq/beacon/api/beaconpb"
	"github.com/beaconhq/beacon/internal/rpcerr"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Service implements the Session gRPC service.
type Service struct {
	beaconpb.UnimplementedSessionServer
	m *Manager
}

// NewService serves sessions from m.
func NewService(m *Manager) *Service { return &Service{m: m} }

// Open runs one session for the life of the stream.
func (s *Service) Open(stream beaconpb.Session_OpenServer) error {
	// A client that never says open must not hold a handler forever.
	type recv struct {
		msg *beaconpb.SessionRequest
		err error
	}
	got := make(chan recv, 1)
	go func() {
		m, err := stream.Recv()
		got <- recv{m, err}
	}()
	var first *beaconpb.SessionRequest
	select {
	case r := <-got:
		if r.err != nil {
			return r.err
		}
		first = r.msg
	case <-time.After(firstMessageTimeout):
		return status.Error(codes.DeadlineExceeded, "no open message within 10s")
	case <-stream.Context().Done():
		return stream.Context().Err()
	}
	open := first.GetOpen()
	if open == nil {
		return status.Error(codes.InvalidArgument, "the first message must be open")
	}
	if open.TtlSeconds < 0 || open.TtlSeconds > int64(MaxTTL/time.Second) {
		return status.Errorf(codes.InvalidArgument, "ttl_seconds: %d is not from 1 to %d", open.TtlSeconds, int64(MaxTTL/time.Second))
	}
	sess, err := s.m.Open(stream.Context(), open.Name, time.Duration(open.TtlSeconds)*time.Second)
	if errors.Is(err, ErrStopping) {
		return status.Error(codes.Unavailable, err.Error())
	}
	if err != nil {
		return rpcerr.From(err)
	}
	// Whatever ends this call, the lease goes with it: revoked, unless the
	// agent is stopping under a holder that did not close (see end).
	clientEnded := false
	defer func() { s.end(sess, clientEnded) }()

	events := make(chan *beaconpb.SessionEvent, 16)
	sess.OnLeaseChange(func(old, new clientv3.LeaseID) {
		ev := &beaconpb.SessionEvent{Kind: &beaconpb.SessionEvent_LeaseLost{LeaseLost: &beaconpb.LeaseLost{
			SessionId: sess.ID, OldLeaseId: fmt.Sprintf("%x", old), NewLeaseId: fmt.Sprintf("%x", new)}}}
		select {
		case events <- ev:
		default: // the client is not reading; it learns from its calls failing
		}
	})
	if err := stream.Send(&beaconpb.SessionEvent{Kind: &beaconpb.SessionEvent_Opened{Opened: &beaconpb.SessionOpened{
		SessionId: sess.ID, TtlSeconds: int64(sess.TTL / time.Second), LeaseId: fmt.Sprintf("%x", sess.Lease())}}}); err != nil {
		return err
	}

	c := newConfirmer(sess)
	go c.run()
	defer c.stop()
	recvDone := make(chan error, 1)
	go func() {
		for {
			msg, err := stream.Recv()
			if err != nil {
				recvDone <- err
				return
			}
			switch {
			case msg.GetClose() != nil:
				recvDone <- nil
				return
			case msg.GetConfirm() != nil:
				c.ask(msg.GetConfirm().Seq)
			}
		}
	}()
	stopping := s.m.Stopping()
	for {
		select {
		case err := <-recvDone:
			clientEnded = true
			if err == nil || errors.Is(err, io.EOF) {
				return nil
			}
			// The client went away (exited, was killed): the normal end of
			// a session, not a server error.
			return status.Error(codes.Canceled, "the client ended the session: "+status.Convert(err).Message())
		case ev := <-events:
			if err := stream.Send(ev); err != nil {
				return err
			}
		case conf := <-c.answers:
			if err := stream.Send(&beaconpb.SessionEvent{Kind: &beaconpb.SessionEvent_Confirmed{Confirmed: conf}}); err != nil {
				return err
			}
		case <-stopping:
			stopping = nil
			if err := stream.Send(&beaconpb.SessionEvent{Kind: &beaconpb.SessionEvent_Stopping{Stopping: &beaconpb.AgentStopping{
				WaitMs: s.m.stopWait.Milliseconds()}}}); err != nil {
				return err
			}
		case <-sess.Done():
			return status.Error(codes.Unavailable, "the session ended: the agent is stopping")
		case <-stream.Context().Done():
			return status.FromContextError(stream.Context().Err()).Err()
		}
	}
}

// end ends the session with its stream. A client that closed its side, or
// went away, is done with what it held: revoke. While the agent stops, a
// holder's session whose stream the server ended is left to CloseAll,
// which abandons it to its TTL, since the holder may still be acting.
func (s *Service) end(sess *Session, clientEnded bool) {
	select {
	case <-s.m.Stopping():
		if !clientEnded && sess.Holding() {
			sess.Abandon()
			return
		}
	default:
	}
	sess.Close()
}

const firstMessageTimeout = 10 * time.Second
