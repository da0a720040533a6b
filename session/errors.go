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
)

// tooManySessions names the limit and its value.
func tooManySessions(limit int) error {
	return rpcerr.Wrapf(ErrTooManySessions,
		"this agent has %d sessions open, its limit (max-sessions %d); close sessions you no longer need", limit, limit)
}
