package apiserver

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// A handler's bare context error answers its own code (not Unknown, which
// is logged at ERROR); a status a handler chose, and any other error, pass
// through untouched.
func TestContextCodes(t *testing.T) {
	other := errors.New("boom")
	chosen := status.Error(codes.FailedPrecondition, "no")
	for _, tc := range []struct {
		err  error
		want codes.Code
	}{
		{context.Canceled, codes.Canceled},
		{fmt.Errorf("reserving: %w", context.DeadlineExceeded), codes.DeadlineExceeded},
		{chosen, codes.FailedPrecondition},
		{other, codes.Unknown},
		{nil, codes.OK},
	} {
		got := contextCodes(tc.err)
		if status.Code(got) != tc.want {
			t.Errorf("contextCodes(%v) = %v, want %v", tc.err, status.Code(got), tc.want)
		}
		if tc.err == chosen || tc.err == other {
			if got != tc.err {
				t.Errorf("contextCodes(%v) changed the error to %v", tc.err, got)
			}
		}
	}
}
