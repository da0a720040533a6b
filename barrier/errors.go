package barrier

import (
	"fmt"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/beaconhq/beacon/internal/apiduration"
	"github.com/beaconhq/beacon/internal/rpcerr"
	"google.golang.org/grpc/codes"
)

// Named errors. Each knows its gRPC code (see internal/rpcerr).
var (
	// ErrLost: the participant's key went away (its lease ended, or it
	// was deleted by hand) while it waited or after the barrier tripped.
	ErrLost = rpcerr.NewNamed(codes.FailedPrecondition, "barrier: participation lost")
	// ErrSessionEnded: the session closed while entering or inside.
	ErrSessionEnded = rpcerr.NewNamed(codes.FailedPrecondition, "barrier: session ended")
	// ErrCountMismatch: the participant's count is not the count of the
	// round it entered (the count of the round's first participant).
	ErrCountMismatch = rpcerr.NewNamed(codes.FailedPrecondition, "barrier: count mismatch")
	// ErrTooMany: the round holds as many participants as the agent's
	// max-barrier-participants, or the count asked for is above it.
	ErrTooMany = rpcerr.NewNamed(codes.ResourceExhausted, "barrier: too many participants")
	// ErrInvalid is what every FieldError is.
	ErrInvalid = rpcerr.ErrInvalid
)

// FieldError names the request field that is wrong; it answers
// INVALID_ARGUMENT.
type FieldError = rpcerr.FieldError

// Limits on what a request may carry.
const (
	MaxNameBytes = 256
	MaxTimeout   = 24 * time.Hour
	// DefaultMaxParticipants is the agent's max-barrier-participants
	// unless configured: a round's participants at once. Every
	// participant watches the barrier, so a round of n costs n² watch
	// events in all; 1,024 is far above any fleet's barrier.
	DefaultMaxParticipants = 1024
	// MaxParticipantsCeiling bounds the configuration key itself.
	MaxParticipantsCeiling = 1 << 16
)

// ValidateName checks a barrier name: it becomes one path segment of the
// etcd key, so it must be non-empty, printable and hold no '/'.
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
		if !unicode.IsPrint(r) || unicode.IsSpace(r) {
			return &FieldError{Field: "name", Msg: fmt.Sprintf("%q must not contain spaces or control characters", name)}
		}
	}
	return nil
}

// ValidateCount checks a participant count against the agent's limit.
func ValidateCount(count, limit int) error {
	if count < 1 {
		return &FieldError{Field: "count", Msg: fmt.Sprintf("%d: give the number of participants, at least 1", count)}
	}
	if count > limit {
		return rpcerr.Wrapf(ErrTooMany, "barrier: count %d is over this agent's limit (max-barrier-participants %d)", count, limit)
	}
	return nil
}

// timeoutField reads the timeout of Enter and WaitLeft (0: none).
var timeoutField = apiduration.Field{Name: "timeout", Max: MaxTimeout}
