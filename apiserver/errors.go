package apiserver

import (
	"github.com/beaconhq/beacon/internal/rpcerr"
	"google.golang.org/grpc/codes"
)

// Named errors of the API server, each with its gRPC code.
var (
	// ErrTooManyStreams: a connection has as many calls in flight as
	// Limits.MaxStreamsPerConn allows.
	ErrTooManyStreams = rpcerr.NewNamed(codes.ResourceExhausted, "too many calls in flight on this connection")
	// ErrTooManyAgentStreams: the agent (or its unix socket) has as many
	// calls in flight as Limits.MaxStreams allows.
	ErrTooManyAgentStreams = rpcerr.NewNamed(codes.ResourceExhausted, "too many calls in flight on this agent")
	// ErrTooManySessions: a connection has as many sessions open as
	// Limits.MaxSessionsPerConn allows.
	ErrTooManySessions = rpcerr.NewNamed(codes.ResourceExhausted, "too many sessions open on this connection")
)

// limitError is base with a message that names the limit and its value,
// as the status the client receives.
func limitError(base *rpcerr.Named, msg string) error {
	return rpcerr.From(rpcerr.Wrap(base, msg))
}
