package lock

import (
	"context"
	"fmt"

	"github.com/beaconhq/beacon/internal/rpcerr"
	"github.com/beaconhq/beacon/session"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
)

// Owners. A grant belongs to the session whose lease its key carries, and
// only that session may give it up: the session id is the secret that
// proves it (see session.Manager), so it is never written to etcd, never
// answered to another client and never put in an error message. The lease
// id, which the key shows anyway, names a holder where one must be named.
var (
	// ErrNoSession: a call that changes a grant named no session.
	ErrNoSession = rpcerr.NewNamed(codes.PermissionDenied, "session_id: required: only the session that holds a grant may release it")
	// ErrUnknownSession: the session named is not open on this agent (it
	// ended, or never was). The id is not repeated.
	ErrUnknownSession = rpcerr.NewNamed(codes.NotFound, "session_id: no session with that id is open on this agent")
	// ErrNotHolder: the grant is held, by another session.
	ErrNotHolder = rpcerr.NewNamed(codes.PermissionDenied, "the grant is held by another session")
)

// session returns the open session id names, or ErrUnknownSession.
func (s *Service) session(id string) (*session.Session, error) {
	sess, err := s.sessions.Get(id)
	if err != nil {
		return nil, ErrUnknownSession
	}
	return sess, nil
}

// checkHolder refuses a change of the grant (key, token) by sess unless
// sess holds it. A key under another lease is either another session's
// grant, which is refused (ErrNotHolder), or no grant any more, which is
// ErrLost like any release of a lost grant: nothing is left to protect,
// and the session's own grant under an earlier lease reads the same way.
func (s *Service) checkHolder(ctx context.Context, sess *session.Session, key string, token int64) error {
	lease, err := LeaseOf(key)
	if err != nil {
		return &FieldError{Field: "key", Msg: err.Error()}
	}
	if lease == sess.Lease() {
		return nil
	}
	held, err := Holds(ctx, s.cli, key, token)
	switch {
	case err != nil:
		return err
	case held:
		return fmt.Errorf("%w: %s (lease %x) is not this session's", ErrNotHolder, key, int64(lease))
	}
	return fmt.Errorf("%w: %s with token %d no longer holds", ErrLost, key, token)
}

// leaseHex names a lease in messages and logs, in place of a session id.
func leaseHex(l clientv3.LeaseID) string { return fmt.Sprintf("%x", int64(l)) }
