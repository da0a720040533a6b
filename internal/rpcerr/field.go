package rpcerr

import (
	"errors"

	"google.golang.org/grpc/codes"
)

// ErrInvalid is what every FieldError is: errors.Is(err, ErrInvalid) tells
// bad input from a failure, whichever package refused it.
var ErrInvalid = NewNamed(codes.InvalidArgument, "invalid argument")

// FieldError is bad input: it names the field at fault (a request field,
// or the CLI flag that sets it) and answers INVALID_ARGUMENT. The packages
// re-export it under their own name (lock.FieldError, queue.FieldError…),
// since callers outside the module cannot name internal/rpcerr.
type FieldError struct {
	Field string
	Msg   string
}

func (e *FieldError) Error() string        { return e.Field + ": " + e.Msg }
func (e *FieldError) Unwrap() error        { return ErrInvalid }
func (e *FieldError) GRPCCode() codes.Code { return codes.InvalidArgument }

// Within names err's field as one inside parent: a FieldError on "port"
// within "services[0]" is on "services[0].port"; any other error is on
// parent itself.
func Within(parent string, err error) *FieldError {
	var fe *FieldError
	if errors.As(err, &fe) {
		return &FieldError{Field: parent + "." + fe.Field, Msg: fe.Msg}
	}
	return &FieldError{Field: parent, Msg: err.Error()}
}
