package config

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/beaconhq/beacon/internal/rpcerr"
	"github.com/dustin/go-humanize"
	"google.golang.org/grpc/codes"
)

// Limits on what the store accepts.
const (
	MaxKeyLen   = 1024    // bytes of a key or prefix
	MaxValueLen = 1 << 20 // bytes of a value (1 MiB)
)

// Named errors. Match them with errors.Is.
var (
	// ErrNotFound: the key does not exist.
	ErrNotFound = errors.New("config: key not found")
	// ErrRevisionMismatch: a Put or Delete with IfRevision found the key
	// at another revision. The error is a *RevisionError.
	ErrRevisionMismatch = errors.New("config: revision mismatch")
)

// FieldError is bad input; it names the field at fault, and answers
// InvalidArgument over gRPC.
type FieldError = rpcerr.FieldError

// RevisionError says at which revision the key really is: 0 means it does
// not exist. It answers FailedPrecondition over gRPC.
type RevisionError struct {
	Key      string
	Want     int64
	Current  int64
	operator string // "put" or "delete"
}

func (e *RevisionError) Error() string {
	cur := fmt.Sprintf("its revision is %d", e.Current)
	if e.Current == 0 {
		cur = "it does not exist"
	}
	want := fmt.Sprintf("revision %d", e.Want)
	if e.Want == 0 {
		want = "no key"
	}
	return fmt.Sprintf("%s %q: if_revision wants %s, but %s", e.operator, e.Key, want, cur)
}
func (e *RevisionError) Unwrap() error        { return ErrRevisionMismatch }
func (e *RevisionError) GRPCCode() codes.Code { return codes.FailedPrecondition }

// notFound names the key that was not found; it answers NotFound.
type notFound struct{ key string }

func (e *notFound) Error() string        { return fmt.Sprintf("key %q: not found", e.key) }
func (e *notFound) Unwrap() error        { return ErrNotFound }
func (e *notFound) GRPCCode() codes.Code { return codes.NotFound }

// ValidateKey checks a key: non-empty, at most MaxKeyLen bytes, valid
// UTF-8 without control characters, no leading '/', no "..". field names
// the input in the error ("key").
func ValidateKey(field, key string) error {
	if key == "" {
		return &FieldError{Field: field, Msg: "must not be empty"}
	}
	if err := validatePath(field, key); err != nil {
		return err
	}
	if strings.HasSuffix(key, "/") {
		return &FieldError{Field: field, Msg: fmt.Sprintf("%q ends with '/': a key names a value, not a directory", key)}
	}
	return nil
}

// ValidatePrefix checks a prefix for List and Watch: "" (every key) or a
// key-like path, which may end with '/'.
func ValidatePrefix(field, prefix string) error {
	if prefix == "" {
		return nil
	}
	return validatePath(field, prefix)
}

func validatePath(field, p string) error {
	if len(p) > MaxKeyLen {
		return &FieldError{Field: field, Msg: fmt.Sprintf("%d bytes is over the limit of %d", len(p), MaxKeyLen)}
	}
	if !utf8.ValidString(p) {
		return &FieldError{Field: field, Msg: "must be valid UTF-8"}
	}
	if strings.HasPrefix(p, "/") {
		return &FieldError{Field: field, Msg: fmt.Sprintf("%q must not start with '/': keys are relative to the config namespace", p)}
	}
	if strings.Contains(p, "..") {
		return &FieldError{Field: field, Msg: fmt.Sprintf("%q must not contain \"..\"", p)}
	}
	if strings.Contains(p, "//") {
		return &FieldError{Field: field, Msg: fmt.Sprintf("%q must not contain an empty path segment (\"//\")", p)}
	}
	for _, r := range p {
		if r < 0x20 || r == 0x7f {
			return &FieldError{Field: field, Msg: fmt.Sprintf("%q must not contain control characters", p)}
		}
	}
	return nil
}

// ValidateValue checks a value's size.
func ValidateValue(field string, v []byte) error { return ValidateValueSize(field, int64(len(v))) }

// ValidateValueSize checks the size of a value of n bytes; the CLI checks
// what it read with it, so that the refusal names the whole size.
func ValidateValueSize(field string, n int64) error {
	if n > MaxValueLen {
		return &FieldError{Field: field, Msg: fmt.Sprintf("%s (%d bytes) is over the limit of 1 MiB (%d bytes) on a config value",
			humanize.Bytes(uint64(n)), n, MaxValueLen)}

	}
	return nil
}

// validRevision checks a revision given by the caller.
func validRevision(field string, rev int64) error {
	if rev < 0 {
		return &FieldError{Field: field, Msg: fmt.Sprintf("%d must not be negative", rev)}
	}
	return nil
}
