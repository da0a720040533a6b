package client

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/beaconhq/beacon/api/beaconpb"
)

// ErrSessionClosed is returned by calls on a session that has ended.
var ErrSessionClosed = errors.New("session closed")

// Session is a session with the local agent: what is registered or held in
// it lives as long as this process keeps it open, and is released at once
// when the process closes it or dies.
type Session struct {
	ID    string
	Lease string
	TTL   time.Duration

	stream beaconpb.Session_OpenClient
	cancel context.CancelFunc
	done   chan struct{}
	events chan *beaconpb.SessionEvent

	closeOnce sync.Once
	err       error
}

// SessionOption configures NewSession.
type SessionOption func(*beaconpb.OpenSession)

// WithTTL sets how long the session outlives the agent if the agent itself
// dies (default 10s).
func WithTTL(d time.Duration) SessionOption {
	return func(o *beaconpb.OpenSession) { o.TtlSeconds = int64(d / time.Second) }
}

// WithName labels the session in the agent's logs.
func WithName(name string) SessionOption {
	return func(o *beaconpb.OpenSession) { o.Name = name }
}

// NewSession opens a session. ctx bounds only the opening.
func (c *Client) NewSession(ctx context.Context, opts ...SessionOption) (*Session, error) {
	open := &beaconpb.OpenSession{}
	for _, o := range opts {
		o(open)
	}
	sctx, cancel := context.WithCancel(context.Background())
	stream, err := c.Sessions.Open(sctx)
	if err != nil {
		cancel()
		return nil, err
	}
	if err := stream.Send(&beaconpb.SessionRequest{Kind: &beaconpb.SessionRequest_Open{Open: open}}); err != nil {
		cancel()
		return nil, err
	}
	type result struct {
		ev  *beaconpb.SessionEvent
		err error
	}
	first := make(chan result, 1)
	go func() {
		ev, err := stream.Recv()
		first <- result{ev, err}
	}()
	var r result
	select {
	case r = <-first:
	case <-ctx.Done():
		cancel()
		return nil, ctx.Err()
	}
	if r.err != nil {
		cancel()
		return nil, r.err
	}
	opened := r.ev.GetOpened()
	if opened == nil {
		cancel()
		return nil, fmt.Errorf("agent answered %v instead of opening the session", r.ev)
	}
	s := &Session{
		ID: opened.SessionId, Lease: opened.LeaseId, TTL: time.Duration(opened.TtlSeconds) * time.Second,
		stream: stream, cancel: cancel, done: make(chan struct{}), events: make(chan *beaconpb.SessionEvent, 16),
	}
	go s.recv()
	return s, nil
}

func (s *Session) recv() {
	defer close(s.done)
	defer close(s.events)
	for {
		ev, err := s.stream.Recv()
		if err != nil {
			s.err = err
			return
		}
		select {
		case s.events <- ev:
		default: // nobody reads events; drop rather than stall
		}
	}
}

// Events delivers the agent's notices (a lease lost and renewed); it is
// closed when the session ends.
func (s *Session) Events() <-chan *beaconpb.SessionEvent { return s.events }

// Done is closed when the session has ended, closed or broken.
func (s *Session) Done() <-chan struct{} { return s.done }

// Close ends the session; the agent revokes its lease at once.
func (s *Session) Close() error {
	s.closeOnce.Do(func() {
		_ = s.stream.Send(&beaconpb.SessionRequest{Kind: &beaconpb.SessionRequest_Close{Close: &beaconpb.CloseSession{}}})
		_ = s.stream.CloseSend()
		select {
		case <-s.done:
		case <-time.After(5 * time.Second):
		}
		s.cancel()
	})
	return nil
}
