// Package rpcerr turns errors from etcd and the recipes into gRPC statuses
// with the codes DESIGN.md promises: InvalidArgument for bad input,
// NotFound, FailedPrecondition, Unavailable without quorum,
// DeadlineExceeded.
package rpcerr

import (
	"context"
	"errors"
	"fmt"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Coded is an error that knows its gRPC code; packages wrap their named
// errors in it (or implement GRPCCode) so the mapping stays beside them.
type Coded interface {
	error
	GRPCCode() codes.Code
}

// New returns an error with a code and a message.
func New(code codes.Code, msg string) error { return status.Error(code, msg) }

// From maps err to a gRPC status error. Errors that already carry a status
// keep it.
func From(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		if s := status.Convert(err); s.Code() != codes.Unknown {
			return err
		}
	}
	var coded Coded
	switch {
	case errors.As(err, &coded):
		return status.Error(coded.GRPCCode(), err.Error())
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, err.Error())
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, err.Error())
	case errors.Is(err, rpctypes.ErrNoLeader), errors.Is(err, rpctypes.ErrTimeout),
		errors.Is(err, rpctypes.ErrTimeoutDueToLeaderFail), errors.Is(err, rpctypes.ErrTimeoutDueToConnectionLost),
		errors.Is(err, rpctypes.ErrLeaderChanged), errors.Is(err, rpctypes.ErrUnhealthy):
		return status.Error(codes.Unavailable, err.Error())
	case errors.Is(err, rpctypes.ErrNoSpace):
		// etcd's backend reached its quota (its NOSPACE alarm): every
		// write that adds bytes is refused until an operator makes room
		// and disarms it.
		return status.Error(codes.ResourceExhausted, err.Error())
	case errors.Is(err, rpctypes.ErrMemberNotFound):
		return status.Error(codes.NotFound, err.Error())
	case errors.Is(err, rpctypes.ErrMemberNotEnoughStarted), errors.Is(err, rpctypes.ErrTooManyLearners):
		return status.Error(codes.FailedPrecondition, err.Error())
	}
	if s, ok := status.FromError(err); ok && s.Code() != codes.Unknown {
		return err
	}
	return status.Error(codes.Internal, err.Error())
}

// Named is a package's named error (lock.ErrLost, queue.ErrEmpty) that
// answers its gRPC code.
type Named struct {
	code codes.Code
	msg  string
}

// NewNamed returns a named error with a code.
func NewNamed(code codes.Code, msg string) *Named { return &Named{code: code, msg: msg} }

func (e *Named) Error() string { return e.msg }

// GRPCCode is the code the error answers.
func (e *Named) GRPCCode() codes.Code { return e.code }

// Wrap gives a named error a message of its own while keeping its code and
// its identity: errors.Is(Wrap(ErrX, "…"), ErrX) holds.
func Wrap(base *Named, msg string) error { return &wrapped{base: base, msg: msg} }

// Wrapf is Wrap with a formatted message, which replaces base's text. When
// base's text belongs in the message, wrap it with fmt.Errorf and %w
// instead: the code and the identity are found through either.
func Wrapf(base *Named, format string, args ...any) error {
	return Wrap(base, fmt.Sprintf(format, args...))
}

type wrapped struct {
	base *Named
	msg  string
}

func (w *wrapped) Error() string        { return w.msg }
func (w *wrapped) Unwrap() error        { return w.base }
func (w *wrapped) GRPCCode() codes.Code { return w.base.code }
