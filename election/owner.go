package election

import (
	"context"
	"errors"
	"fmt"

	"github.com/beaconhq/beacon/internal/rpcerr"
	"github.com/beaconhq/beacon/session"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
)

// Owners. A leadership belongs to the session whose lease its key
// carries; only that session may proclaim or resign it. The session id is
// the secret that proves it, so it is never written to etcd (the key
// names the lease, the value is the proposal), never answered to another
// client and never put in an error message.
var (
	// ErrNoSession: Proclaim or Resign named no session.
	ErrNoSession = rpcerr.NewNamed(codes.PermissionDenied, "session_id: required: only the session that leads may proclaim or resign")
	// ErrUnknownSession: the session named is not open on this agent. The
	// id is not repeated.
	ErrUnknownSession = rpcerr.NewNamed(codes.NotFound, "session_id: no session with that id is open on this agent")
	// ErrNotOwner: the leadership at that rev is another session's.
	ErrNotOwner = rpcerr.NewNamed(codes.PermissionDenied, "election: the leadership is another session's")
)

// lookup returns the open session id names. A call that changes a
// leadership (changes) answers ErrNoSession for an empty id; the others,
// which only campaign or watch, INVALID_ARGUMENT.
func (s *Service) lookup(id string, changes bool) (*session.Session, error) {
	switch {
	case id == "" && changes:
		return nil, rpcerr.From(ErrNoSession)
	case id == "":
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

// othersAt says whether a candidate of another lease than mine holds the
// term rev: then a Proclaim or Resign of rev by my session is refused
// rather than answered as an ended leadership.
func (e *Election) othersAt(ctx context.Context, rev int64, mine clientv3.LeaseID) (bool, error) {
	resp, err := e.cli.Get(ctx, e.prefix, clientv3.WithPrefix(), clientv3.WithKeysOnly(),
		clientv3.WithMinCreateRev(rev), clientv3.WithMaxCreateRev(rev))
	if err != nil {
		return false, err
	}
	for _, kv := range resp.Kvs {
		if string(kv.Key) != e.Key(mine) {
			return true, nil
		}
	}
	return false, nil
}

// refuseOthers turns the failure of a Proclaim or Resign of rev by the
// session with lease mine into ErrNotOwner when rev is another's term;
// otherwise it returns failure (nil: the leadership just ended).
func (e *Election) refuseOthers(ctx context.Context, rev int64, mine clientv3.LeaseID, failure error) error {
	if others, err := e.othersAt(ctx, rev, mine); err == nil && others {
		return fmt.Errorf("%w: the term at rev %d is not this session's", ErrNotOwner, rev)
	}
	return failure
}
