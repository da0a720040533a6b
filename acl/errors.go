package acl

import (
	"github.com/beaconhq/beacon/internal/rpcerr"
	"google.golang.org/grpc/codes"
)

// Named errors of the package; each answers its gRPC code through
// rpcerr.From. Messages wrap them with the detail (errors.Is still holds).
var (
	// ErrInvalidRule is a rule that does not parse (INVALID_ARGUMENT).
	ErrInvalidRule = rpcerr.NewNamed(codes.InvalidArgument, "invalid ACL rule")
	// ErrInvalidArgument is other bad input (INVALID_ARGUMENT).
	ErrInvalidArgument = rpcerr.NewNamed(codes.InvalidArgument, "invalid argument")
	// ErrNoToken is a call with ACLs on that brings no token (UNAUTHENTICATED).
	ErrNoToken = rpcerr.NewNamed(codes.Unauthenticated,
		"ACLs are on: this call needs a token (--token or BEACON_TOKEN; `authorization: Bearer <secret>` in gRPC metadata)")
	// ErrUnknownToken is a secret no token has: never made, or revoked
	// (UNAUTHENTICATED).
	ErrUnknownToken = rpcerr.NewNamed(codes.Unauthenticated, "the token is not known (revoked, or never created)")
	// ErrPermissionDenied is a token whose rules do not allow the call
	// (PERMISSION_DENIED); the message names the rule that is missing.
	ErrPermissionDenied = rpcerr.NewNamed(codes.PermissionDenied, "permission denied")
	// ErrBootstrapped is a second Bootstrap (FAILED_PRECONDITION).
	ErrBootstrapped = rpcerr.NewNamed(codes.FailedPrecondition,
		"ACL bootstrap was already done: the management token exists (revoke-and-recreate tokens with it; it cannot be shown again)")
	// ErrTokenNotFound is an accessor id that names no token (NOT_FOUND).
	ErrTokenNotFound = rpcerr.NewNamed(codes.NotFound, "no such token")
	// ErrACLDisabled is an ACL management call on an agent with ACLs off
	// (FAILED_PRECONDITION).
	ErrACLDisabled = rpcerr.NewNamed(codes.FailedPrecondition, "ACLs are off on this agent (acl: true, or --acl, turns them on)")
	// ErrNotLoaded is a call before the token cache has its first view of
	// etcd (UNAVAILABLE).
	ErrNotLoaded = rpcerr.NewNamed(codes.Unavailable, "the agent has not loaded its ACL tokens from etcd yet; retry")
)
