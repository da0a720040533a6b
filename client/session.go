package client

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/beaconhq/beacon/api/beaconpb"
	"github.com/beaconhq/beacon/internal/holdclock"
	"github.com/beaconhq/beacon/internal/procid"
	"google.golang.org/protobuf/types/known/durationpb"
)

// ErrSessionClosed is returned by calls on a session that has ended.
var ErrSessionClosed = errors.New("session closed")

// ErrAgentStopping: the agent said it is stopping; what is held in its
// sessions must stop.
var ErrAgentStopping = errors.New("the agent is stopping")

// Session is a session with the local agent: what is registered or held in
// it lives as long as this process keeps it open, and is released at once
// when the process closes it or dies.
//
// The session asks the agent to confirm its lease at least every third of
// the TTL (see LeasePeriod), so that what it holds ends on this process's
// own clock if the agent, the host or the cluster stops answering.
type Session struct {
	ID string
	// Lease is the lease the session opened with, in hex; Period tells the
	// current one.
	Lease string
	TTL   time.Duration

	stream   beaconpb.Session_OpenClient
	cancel   context.CancelFunc
	done     chan struct{}
	events   chan *beaconpb.SessionEvent
	stopping chan struct{} // closed when the agent says it stops
	kick     chan struct{} // capacity 1: ask for a confirmation now
	every    time.Duration // between confirmations

	sendMu sync.Mutex // gRPC streams take one sender at a time

	mu       sync.Mutex
	period   *LeasePeriod
	asked    map[uint64]time.Duration // confirmation requests in flight, by seq
	endedIDs []string                 // the session's ended leases, newest last
	seq      uint64
	err      error // why the session ended, if not by Close
	closing  bool

	closeOnce sync.Once
}

type sessionOptions struct {
	open  beaconpb.OpenSession
	every time.Duration
}

// SessionOption configures NewSession.
type SessionOption func(*sessionOptions)

// WithTTL sets how long the session outlives the agent if the agent itself
// dies (default 10s). Holds end on this process's clock within that time.
func WithTTL(d time.Duration) SessionOption {
	// Leases have whole seconds: round up, as the agent's grant does, so a
	// TTL under a second is not refused (the agent takes 1s to 24h). 0
	// keeps the default.
	return func(o *sessionOptions) {
		o.open.Ttl = nil
		if d > 0 {
			d = (d + time.Second - 1) / time.Second * time.Second
		}
		if d != 0 {
			o.open.Ttl = durationpb.New(d)
		}
	}
}

// WithName labels the session in the agent's logs.
func WithName(name string) SessionOption {
	return func(o *sessionOptions) { o.open.Name = name }
}

// WithConfirmEvery sets how often the session asks the agent to confirm
// its lease (default and most: a quarter of the TTL). A holder that wants
// time to stop before its deadline (a grace) confirms more often, so that
// a healthy hold never comes within the grace of its deadline.
func WithConfirmEvery(d time.Duration) SessionOption {
	return func(o *sessionOptions) { o.every = d }
}

// NewSession opens a session. ctx bounds only the opening.
func (c *Client) NewSession(ctx context.Context, opts ...SessionOption) (*Session, error) {
	o := &sessionOptions{}
	for _, f := range opts {
		f(o)
	}
	// Named, so that the agent revokes at once when this process dies,
	// but not when only its connection breaks (see OpenSession.process).
	o.open.Process = procid.Self()
	sctx, cancel := context.WithCancel(context.Background())
	stream, err := c.Sessions.Open(sctx)
	if err != nil {
		cancel()
		return nil, err
	}
	// The grant of the session's lease comes after this: it is the
	// first confirmation, asked now.
	asked := holdclock.Now()
	if err := stream.Send(&beaconpb.SessionRequest{Kind: &beaconpb.SessionRequest_Open{Open: &o.open}}); err != nil {
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
	ttl := opened.GetTtl().AsDuration()
	every := ttl / 4
	if o.every > 0 {
		every = min(every, max(o.every, 10*time.Millisecond))
	}
	s := &Session{
		ID: opened.SessionId, Lease: opened.LeaseId, TTL: ttl,
		stream: stream, cancel: cancel, done: make(chan struct{}), events: make(chan *beaconpb.SessionEvent, 16),
		stopping: make(chan struct{}), kick: make(chan struct{}, 1), every: every,
		asked: map[uint64]time.Duration{},
	}
	s.period = newPeriod(opened.LeaseId, s.lapsed)
	s.period.confirm(asked, ttl)
	go s.recv()
	go s.confirmLoop()
	return s, nil
}

func (s *Session) recv() {
	var err error
	defer func() {
		s.mu.Lock()
		if !s.closing {
			s.err = fmt.Errorf("the session with the agent broke: %w", err)
		}
		p := s.period
		s.mu.Unlock()
		p.end("the session with the agent ended")
		close(s.done)
		close(s.events)
	}()
	for {
		var ev *beaconpb.SessionEvent
		ev, err = s.stream.Recv()
		if err != nil {
			return
		}
		switch k := ev.Kind.(type) {
		case *beaconpb.SessionEvent_Confirmed:
			s.confirmed(k.Confirmed)
			continue
		case *beaconpb.SessionEvent_LeaseLost:
			s.newLease(k.LeaseLost.OldLeaseId, k.LeaseLost.NewLeaseId, "etcd ended it (it expired or was revoked)")
		case *beaconpb.SessionEvent_Stopping:
			select {
			case <-s.stopping:
			default:
				close(s.stopping)
			}
		}
		select {
		case s.events <- ev:
		default: // nobody reads events; drop rather than stall
		}
	}
}

// confirmed applies an answer: it extends the period of its lease, or
// ends it.
func (s *Session) confirmed(c *beaconpb.LeaseConfirmed) {
	s.mu.Lock()
	asked, ok := s.asked[c.Seq]
	for seq := range s.asked {
		if seq <= c.Seq {
			delete(s.asked, seq)
		}
	}
	s.mu.Unlock()
	if !ok {
		return // not a question of ours
	}
	ttl := c.GetTtl().AsDuration()
	switch cur := s.Period(); {
	case s.ended(c.LeaseId):
		// A late answer about a lease already given up: it can neither
		// extend nor end the current one.
	case ttl <= 0:
		s.newLease(c.LeaseId, "", "etcd no longer has it")
	case c.LeaseId != cur.ID:
		// The agent moved to another lease; the old one is gone.
		s.newLease(cur.ID, c.LeaseId, "the agent's session moved to another lease")
		if p := s.Period(); p.ID == c.LeaseId {
			p.confirm(asked, ttl)
		}
	default:
		cur.confirm(asked, ttl)
	}
}

// ended reports whether lease id was the session's and ended.
func (s *Session) ended(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range s.endedIDs {
		if e == id {
			return true
		}
	}
	return false
}

// newLease ends the period of lease old and, if next is set, starts one
// for next.
func (s *Session) newLease(old, next, why string) {
	s.mu.Lock()
	p := s.period
	if p.ID != old {
		s.mu.Unlock()
		return
	}
	if next != "" {
		s.period = newPeriod(next, s.lapsed)
	}
	// Leases only move forward; a few are enough to recognise late news.
	s.endedIDs = append(s.endedIDs[max(0, len(s.endedIDs)-15):], old)
	s.mu.Unlock()
	p.gone(why)
	if next != "" {
		s.askSoon() // arm the new period at once
	}
}

// lapsed follows a period whose deadline passed unconfirmed with a new,
// unarmed period of the same lease, and asks at once: if the lease lives,
// the session goes on, while the lapsed period's holds stay lost.
func (s *Session) lapsed(p *LeasePeriod) {
	s.mu.Lock()
	renew := s.period == p && !s.closing && s.err == nil
	select {
	case <-s.done: // the session ended: no period follows
		renew = false
	default:
	}
	if renew {
		s.period = newPeriod(p.ID, s.lapsed)
	}
	s.mu.Unlock()
	if renew {
		s.askSoon()
	}
}

// confirmLoop asks for a confirmation every s.every while the session
// lives.
// Every question is sent from this one goroutine, so that a send stuck on
// an agent that does not read blocks nothing else (Close cancels it).
func (s *Session) confirmLoop() {
	t := time.NewTicker(s.every)
	defer t.Stop()
	for {
		select {
		case <-s.done:
			return
		case <-t.C:
		case <-s.kick:
		}
		s.ask()
	}
}

// maxAsked bounds the questions a session remembers while unanswered.
const maxAsked = 16

// askSoon has confirmLoop ask now.
func (s *Session) askSoon() {
	select {
	case s.kick <- struct{}{}:
	default: // a question is due already
	}
}

// ask sends one ConfirmLease, noting this process's clock first.
func (s *Session) ask() {
	s.mu.Lock()
	s.seq++
	seq := s.seq
	now := holdclock.Now()
	s.asked[seq] = now
	// Unanswered questions older than a TTL can no longer extend anything,
	// and an answer covers every question before it: a few are enough.
	for q, at := range s.asked {
		if now-at > s.TTL || q+maxAsked < seq {
			delete(s.asked, q)
		}
	}
	s.mu.Unlock()
	s.send(&beaconpb.SessionRequest{Kind: &beaconpb.SessionRequest_Confirm{Confirm: &beaconpb.ConfirmLease{Seq: seq}}})
}

func (s *Session) send(r *beaconpb.SessionRequest) {
	s.sendMu.Lock()
	defer s.sendMu.Unlock()
	_ = s.stream.Send(r) // a broken stream shows in recv
}

// Period is the session's current lease period.
func (s *Session) Period() *LeasePeriod {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.period
}

// periodOf returns the period of lease id, armed (confirmed once). A lease
// the session no longer has, or never had, is an error.
func (s *Session) periodOf(ctx context.Context, id string) (*LeasePeriod, error) {
	// A period that lapsed is followed by a new one; its first
	// confirmation is worth a TTL's wait.
	ctx, cancel := context.WithTimeout(ctx, s.TTL)
	defer cancel()
	for {
		p := s.Period()
		if p.ID != id {
			return nil, fmt.Errorf("%w: lease %s is not the session's (its lease is %s)", ErrLeaseEnded, id, p.ID)
		}
		err := p.waitArmed(ctx)
		switch {
		case err == nil && p.Err() == nil:
			return p, nil
		case ctx.Err() != nil:
			return nil, fmt.Errorf("%w: lease %s was not confirmed in time", ErrLeaseEnded, id)
		}
		select {
		case <-s.done:
			return nil, fmt.Errorf("%w: %v", ErrSessionClosed, s.Err())
		case <-time.After(10 * time.Millisecond): // the next period may follow
		}
	}
}

// Events delivers the agent's notices (a lease lost and renewed, the agent
// stopping); it is closed when the session ends.
func (s *Session) Events() <-chan *beaconpb.SessionEvent { return s.events }

// Stopping is closed when the agent says it is stopping.
func (s *Session) Stopping() <-chan struct{} { return s.stopping }

// Done is closed when the session has ended, closed or broken.
func (s *Session) Done() <-chan struct{} { return s.done }

// Err is nil while the session lives and after Close; otherwise why it
// ended.
func (s *Session) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// Close ends the session; the agent revokes its lease at once. It returns
// why the session had already ended, if it broke before.
func (s *Session) Close() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		broken := s.err != nil
		s.closing = true
		s.mu.Unlock()
		if !broken {
			// The send may be stuck behind one to an agent that does not
			// read: it gets the same bound, then the stream is cancelled.
			go func() {
				s.send(&beaconpb.SessionRequest{Kind: &beaconpb.SessionRequest_Close{Close: &beaconpb.CloseSession{}}})
				s.sendMu.Lock()
				_ = s.stream.CloseSend()
				s.sendMu.Unlock()
			}()
			select {
			case <-s.done:
			case <-time.After(5 * time.Second):
			}
		}
		s.cancel()
		<-s.done
	})
	return s.Err()
}
