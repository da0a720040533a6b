package healthcheck

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestTTLHeartbeats(t *testing.T) {
	t.Parallel()
	m, rec := start(t, Definition{TTL: time.Hour}, Result{Status: StatusCritical}, nil)
	for _, c := range []struct {
		status string
		want   string
	}{
		{"pass", StatusPassing},
		{"warn", StatusWarning},
		{"fail", StatusCritical},
		{"passing", StatusPassing},
		{"warning", StatusWarning},
		{"critical", StatusCritical},
		{" PASS ", StatusPassing},
	} {
		out := "heartbeat " + c.status
		if err := m.Heartbeat(c.status, out); err != nil {
			t.Fatalf("Heartbeat(%q): %v", c.status, err)
		}
		want := Result{c.want, out}
		// Result reflects a heartbeat at once; notify follows.
		if got := m.Result(); got != want {
			t.Fatalf("Result after Heartbeat(%q) = %v, want %v", c.status, got, want)
		}
		if e := rec.next(); e.Result != want {
			t.Fatalf("notify after Heartbeat(%q) = %v, want %v", c.status, e.Result, want)
		}
	}

	for _, bad := range []string{"", "ok", "up", "passed"} {
		if err := m.Heartbeat(bad, ""); !errors.Is(err, ErrBadStatus) {
			t.Fatalf("Heartbeat(%q) = %v, want ErrBadStatus", bad, err)
		}
	}
	if got := m.Result(); got.Output != "heartbeat  PASS " {
		t.Fatalf("a rejected heartbeat changed the result: %v", got)
	}

	long := strings.Repeat("é", MaxOutputBytes)
	if err := m.Heartbeat("warn", long); err != nil {
		t.Fatal(err)
	}
	if e := rec.next(); len(e.Output) > MaxOutputBytes || !strings.HasPrefix(e.Output, "éé") {
		t.Fatalf("long output not cut to %d bytes: %d", MaxOutputBytes, len(e.Output))
	}
}

// With no heartbeat the TTL runs from Start: an agent restart that carried
// the status over still needs the app to check in.
func TestTTLExpiresFromStart(t *testing.T) {
	t.Parallel()
	_, rec := start(t, Definition{TTL: 50 * time.Millisecond}, Result{Status: StatusPassing, Output: "before restart"}, nil)
	if e := rec.next(); e.Result != (Result{StatusCritical, "TTL expired"}) {
		t.Fatalf("got %v", e)
	}
}

// Each heartbeat moves the expiry to TTL after it; once they stop, the
// check expires no earlier than TTL after the last one, and a heartbeat
// brings it back. The bound is on each expiry and the beat before it, so
// a machine slow enough to space two beats by more than the TTL makes no
// false failure (the check then rightly expires between them).
func TestTTLHeartbeatsHoldThenExpire(t *testing.T) {
	t.Parallel()
	const ttl = 300 * time.Millisecond
	m, rec := start(t, Definition{TTL: ttl}, Result{Status: StatusCritical}, nil)

	// Beat for two TTLs. Were the deadline not moved by each beat, the
	// check would expire less than a TTL after one of them.
	var beats []time.Time // each taken before its Heartbeat: a lower bound of its deadline's start
	for end := time.Now().Add(2 * ttl); time.Now().Before(end); {
		beats = append(beats, time.Now())
		if err := m.Heartbeat("pass", "alive"); err != nil {
			t.Fatal(err)
		}
		<-time.After(ttl / 10) // pacing the heartbeats, not waiting for a result
	}
	e := rec.waitFor("TTL expired", func(r Result) bool { return r.Output == "TTL expired" })
	if e.Status != StatusCritical {
		t.Fatalf("got %v", e)
	}
	var before time.Time
	for _, b := range beats {
		if b.Before(e.at) {
			before = b
		}
	}
	if gap := e.at.Sub(before); gap < ttl {
		t.Fatalf("expired %s after the heartbeat before it, want at least the TTL %s", gap, ttl)
	}

	if err := m.Heartbeat("pass", "back"); err != nil {
		t.Fatal(err)
	}
	if e := rec.waitFor("the heartbeat after the expiry", func(r Result) bool { return r.Output == "back" }); e.Status != StatusPassing {
		t.Fatalf("got %v", e)
	}
}

func TestHeartbeatErrors(t *testing.T) {
	t.Parallel()
	srv := newScriptServer(t, 200)
	m, _ := start(t, Definition{HTTP: srv.URL, Interval: time.Hour}, Result{Status: StatusCritical}, nil)
	if err := m.Heartbeat("pass", ""); !errors.Is(err, ErrNotTTL) {
		t.Fatalf("Heartbeat on an HTTP check = %v, want ErrNotTTL", err)
	}

	m, rec := start(t, Definition{TTL: time.Hour}, Result{Status: StatusCritical}, nil)
	stop(m, rec)
	if err := m.Heartbeat("pass", ""); !errors.Is(err, ErrStopped) {
		t.Fatalf("Heartbeat after Stop = %v, want ErrStopped", err)
	}
	if got := m.Result(); got.Status != StatusCritical {
		t.Fatalf("Heartbeat after Stop changed the result: %v", got)
	}
}
