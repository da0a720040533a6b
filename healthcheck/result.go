package healthcheck

import (
	"errors"
	"strings"
	"unicode/utf8"

	"github.com/beaconhq/beacon/internal/rpcerr"
)

// The statuses a check reports; they are the registry's instance statuses.
const (
	StatusPassing  = "passing"
	StatusWarning  = "warning"
	StatusCritical = "critical"
)

// MaxOutputBytes bounds Result.Output. Output lands in every copy of the
// instance (etcd, catalog, watch events), so a chatty endpoint or a verbose
// heartbeat must not be able to bloat it.
const MaxOutputBytes = 512

var (
	// ErrNotTTL is returned by Heartbeat on a monitor whose check is not a
	// TTL check: an HTTP, TCP or gRPC check decides its own status.
	ErrNotTTL = errors.New("healthcheck: not a ttl check")

	// ErrBadStatus is returned by Heartbeat for a status other than
	// pass, warn, fail (or passing, warning, critical).
	ErrBadStatus = errors.New("healthcheck: status must be pass, warn or fail")

	// ErrStopped is returned by Heartbeat after Stop.
	ErrStopped = errors.New("healthcheck: monitor stopped")

	// ErrInvalid is what every FieldError is, so callers can map any
	// definition error to INVALID_ARGUMENT with errors.Is.
	ErrInvalid = rpcerr.ErrInvalid
)

// FieldError says which field of a Definition is wrong. Field is named like
// the CLI flag that sets it (check-http, check-tcp, check-grpc, ttl,
// interval, timeout, success-before-passing, failures-before-critical,
// deregister-critical-after), so a message can go straight back to the user.
type FieldError = rpcerr.FieldError

// Result is a check's verdict: a status and a short human-readable reason.
type Result struct {
	Status string
	Output string
}

// parseStatus accepts the heartbeat words (pass, warn, fail) and the status
// names themselves, because both appear on the CLI and in the API.
func parseStatus(s string) (string, bool) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "pass", StatusPassing:
		return StatusPassing, true
	case "warn", StatusWarning:
		return StatusWarning, true
	case "fail", StatusCritical:
		return StatusCritical, true
	}
	return "", false
}

// sanitize makes r safe to report: a known status (an unknown one is
// critical, the only safe guess) and an output cut to MaxOutputBytes.
func sanitize(r Result) Result {
	s, ok := parseStatus(r.Status)
	if !ok {
		s = StatusCritical
	}
	return Result{Status: s, Output: truncate(r.Output)}
}

// truncate cuts s to MaxOutputBytes without splitting a UTF-8 sequence,
// and replaces invalid UTF-8 so the output is always valid JSON text.
func truncate(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if len(s) <= MaxOutputBytes {
		return s
	}
	const ellipsis = "…"
	cut := MaxOutputBytes - len(ellipsis)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + ellipsis
}
