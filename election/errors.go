package election

import (
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/beaconhq/beacon/internal/apiduration"
	"github.com/beaconhq/beacon/internal/rpcerr"

	"google.golang.org/grpc/codes"
)

// Named errors. Each knows its gRPC code (see internal/rpcerr), so the
// service answers FAILED_PRECONDITION for a lost leadership and NOT_FOUND
// for an election without a leader.
var (
	// ErrLost: the leadership or candidacy ended: its key was deleted
	// (resigned, revoked, expired, or removed by hand) or the session's
	// lease changed under it.
	ErrLost = rpcerr.NewNamed(codes.FailedPrecondition, "election: leadership lost")
	// ErrNotLeader: Proclaim or WatchLeadership with a rev that is not
	// this session's current leadership.
	ErrNotLeader = rpcerr.NewNamed(codes.FailedPrecondition, "election: not the leader")
	// ErrSessionEnded: the session closed while campaigning or leading.
	ErrSessionEnded = rpcerr.NewNamed(codes.FailedPrecondition, "election: session ended")
	// ErrNoLeader: nobody leads the election.
	ErrNoLeader = rpcerr.NewNamed(codes.NotFound, "election: no leader")
	// ErrInvalid is what every FieldError is.
	ErrInvalid = rpcerr.ErrInvalid
)

// FieldError names the request field that is wrong; it answers
// INVALID_ARGUMENT.
type FieldError = rpcerr.FieldError

// Limits on what a request may carry.
const (
	MaxNameBytes     = 256
	MaxProposalBytes = 1 << 20
	MaxTimeout       = 24 * time.Hour
)

// timeoutField is Campaign's timeout: absent or zero waits until elected
// or the call ends.
var timeoutField = apiduration.Field{Name: "timeout", Max: MaxTimeout}

// ValidateName checks an election name: it becomes one path segment of the
// etcd key, so it must be non-empty and hold no '/'.
func ValidateName(name string) error {
	switch {
	case name == "":
		return &FieldError{Field: "name", Msg: "must not be empty"}
	case len(name) > MaxNameBytes:
		return &FieldError{Field: "name", Msg: fmt.Sprintf("%d bytes is over the limit of %d", len(name), MaxNameBytes)}
	case !utf8.ValidString(name):
		return &FieldError{Field: "name", Msg: "must be UTF-8"}
	}
	for _, r := range name {
		if r == '/' {
			return &FieldError{Field: "name", Msg: fmt.Sprintf("%q must not contain '/'", name)}
		}
		if r < 0x20 || r == 0x7f {
			return &FieldError{Field: "name", Msg: fmt.Sprintf("%q must not contain control characters", name)}
		}
	}
	return nil
}

// ValidateProposal checks a leader's value.
func ValidateProposal(p string) error {
	if len(p) > MaxProposalBytes {
		return &FieldError{Field: "proposal", Msg: fmt.Sprintf("%d bytes is over the limit of %d", len(p), MaxProposalBytes)}
	}
	return nil
}

func validateRev(rev int64) error {
	if rev <= 0 {
		return &FieldError{Field: "rev", Msg: fmt.Sprintf("%d is not a leader revision (the rev Campaign returned)", rev)}
	}
	return nil
}

// isLost reports whether err says the leadership is over rather than that
// etcd could not be asked.
func isLost(err error) bool {
	return errors.Is(err, ErrLost) || errors.Is(err, ErrNotLeader) || errors.Is(err, ErrSessionEnded)
}
