package barrier

import (
	"context"
	"errors"
	"fmt"

	"github.com/beaconhq/beacon/internal/rpcerr"
	"github.com/beaconhq/beacon/session"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
)

// ErrUnknownSession: the session named is not open on this agent. The id
// is a secret and is not repeated.
var ErrUnknownSession = rpcerr.NewNamed(codes.NotFound, "session_id: no session with that id is open on this agent")

// lookup returns the open session id names.
func (s *Service) lookup(id string) (*session.Session, error) {
	if id == "" {
		return nil, rpcerr.From(&FieldError{Field: "session_id", Msg: "must not be empty (open one with Session.Open)"})
	}
	sess, err := s.sessions.Get(id)
	if errors.Is(err, session.ErrNotFound) {
		return nil, rpcerr.From(ErrUnknownSession)
	}
	if err != nil {
		return nil, rpcerr.From(err)
	}
	return sess, nil
}

// bind returns a context that also ends when the session ends (cause
// ErrSessionEnded) or its lease changes (cause ErrLost): a participant
// lives in one lease, and its key went with the old one.
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
			s.mu.Unlock()
		})
		sess.OnClose(func() {
			s.mu.Lock()
			delete(s.changed, sess.ID)
			s.mu.Unlock()
		})
	}
	return ch
}
