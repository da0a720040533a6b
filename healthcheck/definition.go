package healthcheck

import (
	"fmt"
	"strings"
	"time"
)

// Defaults and limits applied by Normalize.
const (
	DefaultInterval = 10 * time.Second
	DefaultTimeout  = 5 * time.Second
	MinInterval     = 100 * time.Millisecond
	MaxInterval     = 24 * time.Hour
	MaxTTL          = 24 * time.Hour
	// MaxDeregisterCriticalAfter: a year. Longer is "never" in practice,
	// which 0 already says.
	MaxDeregisterCriticalAfter = 365 * 24 * time.Hour
)

// minInterval is what Normalize enforces. It is a variable only so the
// package's own tests can run checks every few milliseconds.
var minInterval = MinInterval

// Definition describes the one check of a service instance. At most one of
// HTTP, TCP, GRPC and TTL is set; with none, the instance has no check and
// is always passing.
type Definition struct {
	HTTP string        // URL to GET: 2xx passing, 429 warning, anything else or no answer critical
	TCP  string        // host:port to connect to: connected means passing
	GRPC string        // host:port or host:port/service, asked with grpc.health.v1 Check: SERVING passing
	TTL  time.Duration // the app must Heartbeat within TTL, or the check turns critical

	Interval time.Duration // between checks; default 10s, at least 100ms
	Timeout  time.Duration // per check; default 5s, never more than Interval

	// The thresholds damp flapping; 0 and 1 both mean "at once". They apply
	// to HTTP, TCP and gRPC checks; a TTL heartbeat is the app's own verdict.
	SuccessBeforePassing   int // consecutive successes to turn passing
	FailuresBeforeCritical int // consecutive failures to turn critical

	// DeregisterCriticalAfter removes an instance that has been critical
	// this long without a break; 0 never removes it.
	DeregisterCriticalAfter time.Duration
}

// Kinds of check, as Kind reports them.
const (
	KindHTTP = "http"
	KindTCP  = "tcp"
	KindGRPC = "grpc"
	KindTTL  = "ttl"
)

// Kind says which check d defines: "http", "tcp", "grpc", "ttl", or "" for
// none. If several are set (which Normalize rejects) the first in that
// order wins.
func (d Definition) Kind() string {
	switch {
	case d.HTTP != "":
		return KindHTTP
	case d.TCP != "":
		return KindTCP
	case d.GRPC != "":
		return KindGRPC
	case d.TTL != 0:
		return KindTTL
	}
	return ""
}

// Normalize checks d and fills its defaults. On error it returns a
// *FieldError naming the flag at fault and leaves d untouched, so a caller
// never holds a half-normalized definition. Normalizing twice is harmless.
func (d *Definition) Normalize() error {
	if d == nil {
		return &FieldError{Field: "check", Msg: "no definition"}
	}
	n := *d
	n.HTTP = strings.TrimSpace(n.HTTP)
	n.TCP = strings.TrimSpace(n.TCP)
	n.GRPC = strings.TrimSpace(n.GRPC)
	if err := n.normalize(); err != nil {
		return err
	}
	*d = n
	return nil
}

func (d *Definition) normalize() error {
	// Report the second kind given: the first is the one the user meant
	// and the later flag is the one to drop.
	var kinds []string
	for _, k := range []struct {
		set  bool
		flag string
	}{{d.HTTP != "", "check-http"}, {d.TCP != "", "check-tcp"}, {d.GRPC != "", "check-grpc"}, {d.TTL != 0, "ttl"}} {
		if k.set {
			kinds = append(kinds, k.flag)
		}
	}
	if len(kinds) > 1 {
		return &FieldError{Field: kinds[1], Msg: "only one of check-http, check-tcp, check-grpc and ttl may be set, " + kinds[0] + " already is"}
	}

	for _, f := range []struct {
		flag string
		v    int64
	}{
		{"interval", int64(d.Interval)},
		{"timeout", int64(d.Timeout)},
		{"success-before-passing", int64(d.SuccessBeforePassing)},
		{"failures-before-critical", int64(d.FailuresBeforeCritical)},
		{"deregister-critical-after", int64(d.DeregisterCriticalAfter)},
	} {
		if f.v < 0 {
			return &FieldError{Field: f.flag, Msg: "must not be negative"}
		}
	}

	if d.DeregisterCriticalAfter > MaxDeregisterCriticalAfter {
		return &FieldError{Field: "deregister-critical-after", Msg: fmt.Sprintf("must be at most %s (a year), got %s", MaxDeregisterCriticalAfter, d.DeregisterCriticalAfter)}
	}

	switch d.Kind() {
	case KindHTTP:
		if err := checkURL(d.HTTP); err != nil {
			return &FieldError{Field: "check-http", Msg: err.Error()}
		}
	case KindTCP:
		if err := checkHostPort(d.TCP); err != nil {
			return &FieldError{Field: "check-tcp", Msg: err.Error()}
		}
	case KindGRPC:
		addr, svc, hasSvc := strings.Cut(d.GRPC, "/")
		if err := checkHostPort(addr); err != nil {
			return &FieldError{Field: "check-grpc", Msg: err.Error()}
		}
		if hasSvc {
			if err := checkServiceName(svc); err != nil {
				return &FieldError{Field: "check-grpc", Msg: err.Error()}
			}
		}
	case KindTTL:
		if d.TTL < 0 || d.TTL > MaxTTL {
			return &FieldError{Field: "ttl", Msg: fmt.Sprintf("must be more than 0 and at most %s, got %s", MaxTTL, d.TTL)}
		}
		// Nothing is probed, so probe settings would silently do nothing;
		// saying so beats letting the user believe they matter.
		return d.rejectProbeSettings("not used by ttl checks")
	default:
		if err := d.rejectProbeSettings("needs a check (check-http, check-tcp, check-grpc or ttl)"); err != nil {
			return err
		}
		if d.DeregisterCriticalAfter > 0 {
			return &FieldError{Field: "deregister-critical-after", Msg: "needs a check (check-http, check-tcp, check-grpc or ttl)"}
		}
		return nil
	}

	if d.Interval == 0 {
		d.Interval = DefaultInterval
	}
	if d.Interval < minInterval || d.Interval > MaxInterval {
		return &FieldError{Field: "interval", Msg: fmt.Sprintf("must be between %s and %s, got %s", minInterval, MaxInterval, d.Interval)}
	}
	if d.Timeout == 0 {
		d.Timeout = DefaultTimeout
	}
	// A check that may outlive its interval would overlap the next one;
	// capping keeps exactly one probe in flight.
	d.Timeout = min(d.Timeout, d.Interval)
	d.SuccessBeforePassing = max(d.SuccessBeforePassing, 1)
	d.FailuresBeforeCritical = max(d.FailuresBeforeCritical, 1)
	return nil
}

func (d *Definition) rejectProbeSettings(why string) error {
	switch {
	case d.Interval != 0:
		return &FieldError{Field: "interval", Msg: why}
	case d.Timeout != 0:
		return &FieldError{Field: "timeout", Msg: why}
	case d.SuccessBeforePassing > 1:
		return &FieldError{Field: "success-before-passing", Msg: why}
	case d.FailuresBeforeCritical > 1:
		return &FieldError{Field: "failures-before-critical", Msg: why}
	}
	return nil
}
