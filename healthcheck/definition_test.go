package healthcheck

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestNormalizeDefaults(t *testing.T) {
	d := Definition{HTTP: "  http://127.0.0.1:8080/health  "}
	if err := d.Normalize(); err != nil {
		t.Fatal(err)
	}
	want := Definition{HTTP: "http://127.0.0.1:8080/health", Interval: DefaultInterval, Timeout: DefaultTimeout,
		SuccessBeforePassing: 1, FailuresBeforeCritical: 1}
	if d != want {
		t.Fatalf("got %+v, want %+v", d, want)
	}
	again := d
	if err := again.Normalize(); err != nil || again != d {
		t.Fatalf("second Normalize: %+v, %v; want it unchanged", again, err)
	}

	// The timeout is capped at the interval, default or not.
	d = Definition{TCP: "db.internal:5432", Interval: time.Second}
	if err := d.Normalize(); err != nil || d.Timeout != time.Second {
		t.Fatalf("timeout %s, err %v; want 1s", d.Timeout, err)
	}
	d = Definition{GRPC: "[::1]:9000/pkg.Svc", Interval: 2 * time.Second, Timeout: 3 * time.Second}
	if err := d.Normalize(); err != nil || d.Timeout != 2*time.Second {
		t.Fatalf("timeout %s, err %v; want 2s", d.Timeout, err)
	}

	// A TTL check keeps its probe settings at zero.
	d = Definition{TTL: 30 * time.Second, DeregisterCriticalAfter: time.Minute}
	if err := d.Normalize(); err != nil || d.Interval != 0 || d.Timeout != 0 || d.Kind() != KindTTL {
		t.Fatalf("got %+v, %v", d, err)
	}

	// No check at all is valid: the instance is simply passing.
	d = Definition{}
	if err := d.Normalize(); err != nil || d != (Definition{}) {
		t.Fatalf("got %+v, %v", d, err)
	}
}

func TestKind(t *testing.T) {
	for _, c := range []struct {
		d    Definition
		want string
	}{
		{Definition{}, ""},
		{Definition{HTTP: "http://a"}, "http"},
		{Definition{TCP: "a:1"}, "tcp"},
		{Definition{GRPC: "a:1"}, "grpc"},
		{Definition{TTL: time.Second}, "ttl"},
		{Definition{Interval: time.Second}, ""},
	} {
		if got := c.d.Kind(); got != c.want {
			t.Errorf("%+v.Kind() = %q, want %q", c.d, got, c.want)
		}
	}
}

func TestNormalizeErrors(t *testing.T) {
	const h = "http://127.0.0.1:8080/"
	for _, c := range []struct {
		name  string
		d     Definition
		field string
	}{
		{"two kinds", Definition{HTTP: h, TCP: "a:1"}, "check-tcp"},
		{"http and ttl", Definition{HTTP: h, TTL: time.Second}, "ttl"},
		{"grpc and tcp", Definition{TCP: "a:1", GRPC: "a:1"}, "check-grpc"},
		{"http not a URL", Definition{HTTP: "http://a b/"}, "check-http"},
		{"http control char", Definition{HTTP: "http://a/\x00"}, "check-http"},
		{"http scheme", Definition{HTTP: "ftp://a/"}, "check-http"},
		{"http no scheme", Definition{HTTP: "127.0.0.1:8080/health"}, "check-http"},
		{"http no host", Definition{HTTP: "http:///health"}, "check-http"},
		{"http port 0", Definition{HTTP: "http://a:0/"}, "check-http"},
		{"http port too big", Definition{HTTP: "http://a:65536/"}, "check-http"},
		{"http empty port", Definition{HTTP: "http://a:/"}, "check-http"},
		{"http too long", Definition{HTTP: "http://a/" + strings.Repeat("x", 3000)}, "check-http"},
		{"tcp no port", Definition{TCP: "127.0.0.1"}, "check-tcp"},
		{"tcp no host", Definition{TCP: ":8080"}, "check-tcp"},
		{"tcp port name", Definition{TCP: "a:http"}, "check-tcp"},
		{"tcp port 0", Definition{TCP: "a:0"}, "check-tcp"},
		{"tcp port negative", Definition{TCP: "a:-1"}, "check-tcp"},
		{"tcp bad host", Definition{TCP: "a b:80"}, "check-tcp"},
		{"tcp empty label", Definition{TCP: "a..b:80"}, "check-tcp"},
		{"tcp unbracketed v6", Definition{TCP: "::1:80"}, "check-tcp"},
		{"grpc no port", Definition{GRPC: "a/svc"}, "check-grpc"},
		{"grpc empty service", Definition{GRPC: "a:1/"}, "check-grpc"},
		{"grpc service space", Definition{GRPC: "a:1/my svc"}, "check-grpc"},
		{"grpc service slash", Definition{GRPC: "a:1/a/b"}, "check-grpc"},
		{"ttl negative", Definition{TTL: -time.Second}, "ttl"},
		{"ttl over a day", Definition{TTL: 25 * time.Hour}, "ttl"},
		{"ttl with interval", Definition{TTL: time.Second, Interval: time.Second}, "interval"},
		{"ttl with timeout", Definition{TTL: time.Second, Timeout: time.Second}, "timeout"},
		{"ttl with success threshold", Definition{TTL: time.Second, SuccessBeforePassing: 2}, "success-before-passing"},
		{"ttl with failure threshold", Definition{TTL: time.Second, FailuresBeforeCritical: 3}, "failures-before-critical"},
		{"interval negative", Definition{HTTP: h, Interval: -1}, "interval"},
		{"interval too short", Definition{HTTP: h, Interval: time.Millisecond}, "interval"},
		{"interval too long", Definition{HTTP: h, Interval: 25 * time.Hour}, "interval"},
		{"timeout negative", Definition{HTTP: h, Timeout: -time.Second}, "timeout"},
		{"success negative", Definition{HTTP: h, SuccessBeforePassing: -1}, "success-before-passing"},
		{"failures negative", Definition{HTTP: h, FailuresBeforeCritical: -2}, "failures-before-critical"},
		{"deregister negative", Definition{HTTP: h, DeregisterCriticalAfter: -time.Minute}, "deregister-critical-after"},
		{"deregister over a year", Definition{TTL: time.Second, DeregisterCriticalAfter: MaxDeregisterCriticalAfter + time.Second}, "deregister-critical-after"},
		{"no check, interval", Definition{Interval: time.Second}, "interval"},
		{"no check, timeout", Definition{Timeout: time.Second}, "timeout"},
		{"no check, thresholds", Definition{FailuresBeforeCritical: 2}, "failures-before-critical"},
		{"no check, deregister", Definition{DeregisterCriticalAfter: time.Minute}, "deregister-critical-after"},
	} {
		t.Run(c.name, func(t *testing.T) {
			d := c.d
			err := d.Normalize()
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("Normalize(%+v) = %v, want a *FieldError", c.d, err)
			}
			if fe.Field != c.field || fe.Msg == "" || !errors.Is(err, ErrInvalid) {
				t.Fatalf("Normalize(%+v) = %q (field %q), want field %q", c.d, err, fe.Field, c.field)
			}
			if !reflect.DeepEqual(d, c.d) {
				t.Fatalf("Normalize changed the definition on error: %+v", d)
			}
		})
	}
}

func TestNormalizeNil(t *testing.T) {
	var d *Definition
	if err := d.Normalize(); err == nil {
		t.Fatal("nil Definition normalized")
	}
}

// FuzzNormalize runs its seeds under go test: Normalize must not panic,
// must either accept or name a field, and must accept its own output.
func FuzzNormalize(f *testing.F) {
	f.Add("http://127.0.0.1:1/x", "", "", int64(0), int64(0), int64(0), 0, 0, int64(0))
	f.Add("", "[fe80::1%eth0]:22", "", int64(0), int64(time.Second), int64(2*time.Second), 3, 2, int64(time.Minute))
	f.Add("", "", "h:1/svc", int64(0), int64(-1), int64(0), -1, 0, int64(0))
	f.Add("http://[::1", "", "", int64(1), int64(0), int64(0), 0, 0, int64(0))
	f.Add("", "", "", int64(time.Hour), int64(0), int64(0), 1, 1, int64(0))
	f.Add("HTTP://A:65535", "\xff:1", "a:1/\xff", int64(-1<<63), int64(1<<63-1), int64(-1<<63), -1<<31, 1<<31-1, int64(-1))
	f.Fuzz(func(t *testing.T, h, tcp, g string, ttl, iv, to int64, sbp, fbc int, dca int64) {
		d := Definition{HTTP: h, TCP: tcp, GRPC: g, TTL: time.Duration(ttl), Interval: time.Duration(iv),
			Timeout: time.Duration(to), SuccessBeforePassing: sbp, FailuresBeforeCritical: fbc,
			DeregisterCriticalAfter: time.Duration(dca)}
		err := d.Normalize()
		if err != nil {
			var fe *FieldError
			if !errors.As(err, &fe) || fe.Field == "" {
				t.Fatalf("error without a field: %v", err)
			}
			return
		}
		again := d
		if err := again.Normalize(); err != nil || again != d {
			t.Fatalf("not idempotent: %+v -> %+v, %v", d, again, err)
		}
	})
}
