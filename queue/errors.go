package queue

import (
	"errors"
	"fmt"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/beaconhq/beacon/internal/rpcerr"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/codes"
)

var (
	// ErrEmpty: no message became ready within the wait.
	ErrEmpty = rpcerr.NewNamed(codes.NotFound, "no message ready")
	// ErrStaleReceipt: the receipt's reservation is gone — acked, nacked,
	// ended with the consumer's session, or expired and taken again.
	ErrStaleReceipt = rpcerr.NewNamed(codes.FailedPrecondition, "stale receipt: the reservation has ended")
	// ErrSessionEnded: the session the reservation was to be bound to has
	// ended.
	ErrSessionEnded = rpcerr.NewNamed(codes.FailedPrecondition, "session ended")
	// ErrNoMessage: a gate's --after names a message the queue does not
	// hold.
	ErrNoMessage = rpcerr.NewNamed(codes.NotFound, "no such message")
	// ErrTooManyViews: a call needs to follow one more queue than the
	// agent follows at most (max-queue-views), and every queue it follows
	// has a call waiting on it.
	ErrTooManyViews = rpcerr.NewNamed(codes.ResourceExhausted, "wait for a call to end or raise max-queue-views")
)

// FieldError is bad input; it answers INVALID_ARGUMENT naming the field.
type FieldError = rpcerr.FieldError

// ValidateName checks a queue name: 1 to MaxNameLen bytes of printable
// UTF-8, no '/' (it would nest in the key layout) and no spaces.
func ValidateName(name string) error {
	return validateName("queue", name)
}

func validateName(field, name string) error {
	switch {
	case name == "":
		return &FieldError{Field: field, Msg: "required"}
	case len(name) > MaxNameLen:
		return &FieldError{Field: field, Msg: fmt.Sprintf("longer than %d bytes", MaxNameLen)}
	case !utf8.ValidString(name):
		return &FieldError{Field: field, Msg: "not valid UTF-8"}
	}
	for _, r := range name {
		if r == '/' {
			return &FieldError{Field: field, Msg: fmt.Sprintf("%q contains '/'", name)}
		}
		if unicode.IsSpace(r) || !unicode.IsPrint(r) {
			return &FieldError{Field: field, Msg: fmt.Sprintf("%q contains a space or control character", name)}
		}
	}
	return nil
}

// validateDuration checks a duration field: from min to MaxDuration.
func validateDuration(field string, d, min time.Duration) error {
	if d < min || d > MaxDuration {
		return &FieldError{Field: field, Msg: fmt.Sprintf("%s is not from %s to 24h", d, min)}
	}
	return nil
}

// leaseGone reports whether etcd refused a write because its lease no
// longer exists.
func leaseGone(err error) bool { return errors.Is(err, rpctypes.ErrLeaseNotFound) }
