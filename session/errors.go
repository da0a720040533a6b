package session

import (
	"errors"

	"github.com/beaconhq/beacon/internal/rpcerr"
	"google.golang.org/grpc/codes"
)

var (
	// ErrNotFound: no open session with that id on this agent.
	ErrNotFound = errors.New("session not found")
	// ErrClosed: the session was closed.
	ErrClosed = errors.New("session closed")
	// ErrStopping: the agent is stopping and opens no new session.
	ErrStopping = errors.New("the agent is stopping")
	// ErrTooManySessions: the agent has as many sessions open as its
	// limit allows. It answers RESOURCE_EXHAUSTED.
	ErrTooManySessions = rpcerr.NewNamed(codes.ResourceExhausted, "too many sessions open on this agent")
	// ErrTooManySessionsForOwner: one owner (an ACL token) has as many
	// sessions open as its share of the agent allows. It answers
	// RESOURCE_EXHAUSTED.
	ErrTooManySessionsForOwner = rpcerr.NewNamed(codes.ResourceExhausted, "too many sessions open for one token")
	// ErrNotPeersProcess: over the unix socket, a session named a process
	// that is neither the connecting process nor one of its descendants.
	// It answers PERMISSION_DENIED.
	ErrNotPeersProcess = rpcerr.NewNamed(codes.PermissionDenied, "the session names a process that is not the caller's")
)

// tooManySessions names the limit and its value.
func tooManySessions(limit int) error {
	return rpcerr.Wrapf(ErrTooManySessions,
		"this agent has %d sessions open, its limit (max-sessions %d); close sessions you no longer need", limit, limit)
}

// tooManySessionsForOwner names the owner (a token's accessor id, which
// is public), its share and the share's key.
func tooManySessionsForOwner(owner string, limit int) error {
	return rpcerr.Wrapf(ErrTooManySessionsForOwner,
		"token %s has %d sessions open on this agent, its share (max-sessions-per-token %d); close sessions you no longer need",
		owner, limit, limit)
}
