package rpcerr

import (
	"errors"
	"fmt"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestOneDialect: a FieldError, a Wrapf'd named error and a named error
// wrapped with fmt.Errorf's %w each keep their code, their identity and
// their text through From.
func TestOneDialect(t *testing.T) {
	errGone := NewNamed(codes.FailedPrecondition, "gone")
	for _, c := range []struct {
		err  error
		is   error
		code codes.Code
		msg  string
	}{
		{&FieldError{Field: "name", Msg: "must not be empty"}, ErrInvalid, codes.InvalidArgument, "name: must not be empty"},
		{Wrapf(errGone, "key %q went away", "k"), errGone, codes.FailedPrecondition, `key "k" went away`},
		{fmt.Errorf("ack %s: %w", "r1", errGone), errGone, codes.FailedPrecondition, "ack r1: gone"},
		{fmt.Errorf("%w: at rev %d", errGone, 7), errGone, codes.FailedPrecondition, "gone: at rev 7"},
	} {
		if !errors.Is(c.err, c.is) {
			t.Errorf("%v: errors.Is(%v) is false", c.err, c.is)
		}
		s := status.Convert(From(c.err))
		if s.Code() != c.code || s.Message() != c.msg {
			t.Errorf("From(%v) = %v %q, want %v %q", c.err, s.Code(), s.Message(), c.code, c.msg)
		}
	}
}
