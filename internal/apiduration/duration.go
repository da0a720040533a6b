// Package apiduration reads the google.protobuf.Duration fields of the
// agent's API requests, with one rule for every service: an absent field
// is its documented default; a present one must be a valid Duration
// (durationpb's CheckValid: nanos within a second, seconds and nanos of
// one sign), not negative, and within the field's range. Anything else is
// INVALID_ARGUMENT naming the field.
package apiduration

import (
	"fmt"
	"time"

	"github.com/beaconhq/beacon/internal/rpcerr"
	"google.golang.org/protobuf/types/known/durationpb"
)

// Field is one Duration field of a request.
type Field struct {
	// Name is the field as the request names it ("timeout",
	// "check.interval"): the refusal names it.
	Name string
	// Default is what an absent field means.
	Default time.Duration
	// Min and Max bound a present value. Min 0 lets zero through, for the
	// fields where zero means "none" or "the default"; Max must be set.
	Min, Max time.Duration
}

// Read returns the duration d gives the field, or a *rpcerr.FieldError
// (INVALID_ARGUMENT) naming the field.
func (f Field) Read(d *durationpb.Duration) (time.Duration, error) {
	if d == nil {
		return f.Default, nil
	}
	if err := d.CheckValid(); err != nil {
		return 0, &rpcerr.FieldError{Field: f.Name, Msg: fmt.Sprintf("is not a valid duration (seconds %d, nanos %d): %s",
			d.GetSeconds(), d.GetNanos(), reason(d))}
	}
	// Compared in seconds first: AsDuration saturates beyond ±292 years,
	// which must not pass for the maximum.
	if d.GetSeconds() < 0 || d.GetNanos() < 0 {
		return 0, &rpcerr.FieldError{Field: f.Name, Msg: fmt.Sprintf("%s must not be negative", show(d))}
	}
	v := d.AsDuration()
	if d.GetSeconds() > int64(f.Max/time.Second) || v > f.Max {
		return 0, &rpcerr.FieldError{Field: f.Name, Msg: fmt.Sprintf("%s is more than its maximum %s", show(d), f.Max)}
	}
	if v < f.Min {
		return 0, &rpcerr.FieldError{Field: f.Name, Msg: fmt.Sprintf("%s is less than its minimum %s", show(d), f.Min)}
	}
	return v, nil
}

// reason says why CheckValid refused d, in words a user can act on
// (CheckValid's own text repeats the message's fields in proto syntax).
func reason(d *durationpb.Duration) string {
	const maxSeconds = 315_576_000_000 // 10000 years, the Duration's range
	s, n := d.GetSeconds(), d.GetNanos()
	switch {
	case s > maxSeconds || s < -maxSeconds:
		return "seconds must be within ±10000 years"
	case n <= -1e9 || n >= 1e9:
		return "nanos must be from -999999999 to 999999999"
	}
	return "seconds and nanos must not have opposite signs"
}

// show writes a valid d as Go does ("1.5s"), or in seconds when it is
// beyond time.Duration's range.
func show(d *durationpb.Duration) string {
	if s := d.GetSeconds(); s > int64(maxGo/time.Second) || s < -int64(maxGo/time.Second) {
		return fmt.Sprintf("%ds", s)
	}
	return d.AsDuration().String()
}

// maxGo is the longest time.Duration.
const maxGo = time.Duration(1<<63 - 1)
