package apiduration

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/beaconhq/beacon/internal/rpcerr"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
)

// TestRead: absent is the default; a valid value in range is itself; an
// invalid Duration, a negative one, one under the minimum and one over the
// maximum (also beyond time.Duration's range, where AsDuration saturates)
// are INVALID_ARGUMENT naming the field.
func TestRead(t *testing.T) {
	f := Field{Name: "visibility", Default: 30 * time.Second, Min: time.Millisecond, Max: 24 * time.Hour}
	for _, c := range []struct {
		name string
		d    *durationpb.Duration
		want time.Duration
		msg  string // "" when accepted
	}{
		{"absent", nil, 30 * time.Second, ""},
		{"valid", durationpb.New(1500 * time.Millisecond), 1500 * time.Millisecond, ""},
		{"minimum", durationpb.New(time.Millisecond), time.Millisecond, ""},
		{"maximum", durationpb.New(24 * time.Hour), 24 * time.Hour, ""},
		{"zero under minimum", &durationpb.Duration{}, 0, "0s is less than its minimum 1ms"},
		{"negative", durationpb.New(-time.Second), 0, "-1s must not be negative"},
		{"negative nanos", &durationpb.Duration{Nanos: -5}, 0, "must not be negative"},
		{"too big", durationpb.New(24*time.Hour + time.Nanosecond), 0, "24h0m0.000000001s is more than its maximum 24h0m0s"},
		{"beyond time.Duration", &durationpb.Duration{Seconds: 300 * 365 * 24 * 3600}, 0, "9460800000s is more than its maximum"},
		{"nanos out of range", &durationpb.Duration{Seconds: 1, Nanos: 1e9}, 0, "nanos must be from"},
		{"signs differ", &durationpb.Duration{Seconds: 1, Nanos: -1}, 0, "opposite signs"},
		{"seconds out of range", &durationpb.Duration{Seconds: 1 << 62}, 0, "within ±10000 years"},
	} {
		got, err := f.Read(c.d)
		if c.msg == "" {
			if err != nil || got != c.want {
				t.Errorf("%s: Read = %v, %v; want %v", c.name, got, err, c.want)
			}
			continue
		}
		var fe *rpcerr.FieldError
		if !errors.As(err, &fe) || fe.Field != "visibility" || !strings.Contains(fe.Msg, c.msg) {
			t.Errorf("%s: Read = %v, %v; want a FieldError on visibility containing %q", c.name, got, err, c.msg)
			continue
		}
		if s := status.Convert(rpcerr.From(err)); s.Code() != codes.InvalidArgument || !strings.HasPrefix(s.Message(), "visibility: ") {
			t.Errorf("%s: status %v %q, want InvalidArgument naming visibility", c.name, s.Code(), s.Message())
		}
	}
}

// TestZeroAllowed: with Min 0, zero is a value (e.g. "no timeout"), not a
// refusal, and stays distinct from absent.
func TestZeroAllowed(t *testing.T) {
	f := Field{Name: "timeout", Default: time.Minute, Max: time.Hour}
	if got, err := f.Read(&durationpb.Duration{}); err != nil || got != 0 {
		t.Errorf("zero: %v, %v", got, err)
	}
	if got, err := f.Read(nil); err != nil || got != time.Minute {
		t.Errorf("absent: %v, %v", got, err)
	}
}
