package healthcheck

import (
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// step is an expected notify: the status and how many requests the server
// had answered when it came. Notify runs before the next check starts, so
// the count pins each transition to the exact check that caused it.
type step struct {
	status string
	hits   int64
}

func expectSteps(t *testing.T, m *Monitor, rec *recorder, want []step) {
	t.Helper()
	for i, w := range want {
		e := rec.next()
		if e.Status != w.status || e.hits != w.hits {
			t.Fatalf("notify %d: got %v, want %s at hit %d", i+1, e, w.status, w.hits)
		}
	}
	// Anything more would be a transition the script does not cause.
	stop(m, rec)
	select {
	case e := <-rec.events:
		t.Fatalf("unexpected notify %v", e)
	default:
	}
}

func TestSuccessAndFailureThresholds(t *testing.T) {
	t.Parallel()
	// 3 successes to pass, 2 failures to fail, starting critical.
	srv := newScriptServer(t, 500,
		200, 200, // 1-2: held, the streak is short
		500,           // 3: critical still, but the output changes; the streak resets
		200, 200, 200, // 4-6: passing at the third
		500, 200, // 7-8: one failure held, then a success resets the failure streak
		500, 500, // 9-10: critical at the second
	)
	m, rec := start(t, Definition{HTTP: srv.URL, Interval: 100 * time.Millisecond,
		SuccessBeforePassing: 3, FailuresBeforeCritical: 2}, Result{Status: StatusCritical}, srv.count)
	expectSteps(t, m, rec, []step{{StatusCritical, 3}, {StatusPassing, 6}, {StatusCritical, 10}})
}

func TestWarningAndThresholds(t *testing.T) {
	t.Parallel()
	// 2 successes to pass, 2 failures to fail, starting passing.
	srv := newScriptServer(t, 200,
		500,      // 1: held passing
		429,      // 2: warning at once, and the failure streak ends
		500, 500, // 3-4: critical at the second, counted from warning
		200,      // 5: held critical
		429,      // 6: warning at once, and the success streak ends
		200, 200, // 7-8: passing at the second
	)
	m, rec := start(t, Definition{HTTP: srv.URL, Interval: 100 * time.Millisecond,
		SuccessBeforePassing: 2, FailuresBeforeCritical: 2}, Result{Status: StatusPassing}, srv.count)
	expectSteps(t, m, rec, []step{{StatusWarning, 2}, {StatusCritical, 4}, {StatusWarning, 6}, {StatusPassing, 8}})
}

// An unchanged Result is not notified: starting from the exact result the
// check will produce, the first notify is the later failure.
func TestNoNotifyWithoutChange(t *testing.T) {
	t.Parallel()
	srv := newScriptServer(t, 500, 200, 200, 200)
	m, rec := start(t, Definition{HTTP: srv.URL, Interval: 20 * time.Millisecond},
		Result{StatusPassing, "HTTP GET " + srv.URL + ": 200 OK"}, srv.count)
	expectSteps(t, m, rec, []step{{StatusCritical, 4}})
}

func TestNoCheckIsPassing(t *testing.T) {
	t.Parallel()
	m, rec := start(t, Definition{}, Result{Status: StatusCritical, Output: "old"}, nil)
	if e := rec.next(); e.Result != (Result{Status: StatusPassing}) {
		t.Fatalf("got %v", e)
	}
	if err := m.Heartbeat("pass", ""); !errors.Is(err, ErrNotTTL) {
		t.Fatalf("Heartbeat = %v, want ErrNotTTL", err)
	}
}

// Start with a bad definition runs nothing and says why, critical.
func TestInvalidDefinitionIsCritical(t *testing.T) {
	t.Parallel()
	rec := newRecorder(t, nil)
	m := Start(Definition{HTTP: "ftp://x/", DeregisterCriticalAfter: time.Millisecond}, Result{Status: StatusPassing}, rec.notify, func() {
		t.Error("deregister called for an invalid definition")
	})
	defer stop(m, rec)
	e := rec.next()
	if e.Status != StatusCritical || !strings.HasPrefix(e.Output, "invalid health check: check-http: ") {
		t.Fatalf("got %v", e)
	}
	var fe *FieldError
	if err := m.Heartbeat("pass", ""); !errors.As(err, &fe) {
		t.Fatalf("Heartbeat = %v, want the FieldError", err)
	}
}

func TestDeregisterCriticalAfterFiresOnce(t *testing.T) {
	t.Parallel()
	const after = 100 * time.Millisecond
	srv := newScriptServer(t, 500)
	rec := newRecorder(t, nil)
	var calls atomic.Int64
	called := make(chan time.Time, 10)
	def := Definition{HTTP: srv.URL, Interval: 20 * time.Millisecond, DeregisterCriticalAfter: after}
	if err := def.Normalize(); err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	m := Start(def, Result{Status: StatusCritical}, rec.notify, func() {
		calls.Add(1)
		called <- time.Now()
	})
	select {
	case at := <-called:
		// Initially critical: the clock runs from Start.
		if at.Sub(began) < after {
			t.Fatalf("deregistered %s after Start, before %s", at.Sub(began), after)
		}
	case <-time.After(deadline):
		t.Fatal("deregister not called")
	}
	// Keep failing a few more checks, then stop: still exactly one call.
	more := srv.count() + 5
	eventually(t, "five more checks", func() bool { return srv.count() >= more })
	stop(m, rec)
	if n := calls.Load(); n != 1 {
		t.Fatalf("deregister called %d times", n)
	}
}
