package healthcheck

import (
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// The deregister clock measures continuous critical time: a recovery stops
// it, and the next failure starts it from zero.
func TestDeregisterClockRestartsOnRecovery(t *testing.T) {
	t.Parallel()
	const after = 300 * time.Millisecond
	srv := newScriptServer(t, 200)
	rec := newRecorder(t, nil)
	called := make(chan time.Time, 10)
	m := Start(Definition{HTTP: srv.URL, Interval: 20 * time.Millisecond, DeregisterCriticalAfter: after},
		Result{Status: StatusCritical}, rec.notify, func() { called <- time.Now() })
	defer stop(m, rec)

	rec.waitStatus(StatusPassing)
	failedFrom := time.Now()
	srv.set(500)
	rec.waitStatus(StatusCritical)
	select {
	case at := <-called:
		// Had the clock kept running from Start, this would come about
		// `after` past Start, before failedFrom+after.
		if at.Sub(failedFrom) < after {
			t.Fatalf("deregistered %s after turning critical, want at least %s", at.Sub(failedFrom), after)
		}
	case <-time.After(deadline):
		t.Fatal("deregister not called")
	}
}

// deregister runs on its own goroutine, so it may Stop the monitor that
// called it, which is what a registry removing the instance does.
func TestDeregisterMayStop(t *testing.T) {
	t.Parallel()
	srv := newScriptServer(t, 500)
	monitor := make(chan *Monitor, 1)
	stopped := make(chan struct{})
	m := Start(Definition{HTTP: srv.URL, Interval: 20 * time.Millisecond, DeregisterCriticalAfter: 30 * time.Millisecond},
		Result{Status: StatusPassing}, nil, func() {
			(<-monitor).Stop()
			close(stopped)
		})
	monitor <- m
	select {
	case <-stopped:
	case <-time.After(deadline):
		t.Fatal("deregister did not manage to Stop the monitor")
	}
}

// After Stop returns no notify comes, even from a check that changes the
// result every time; the goroutine is gone.
func TestStopEndsNotifications(t *testing.T) {
	t.Parallel()
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if n.Add(1)%2 == 0 {
			w.WriteHeader(500)
		}
	}))
	t.Cleanup(srv.Close)
	m, rec := start(t, Definition{HTTP: srv.URL, Interval: 20 * time.Millisecond}, Result{Status: StatusCritical}, nil)
	for range 4 {
		rec.next()
	}
	stop(m, rec) // from here on the recorder fails the test on any notify
	select {
	case <-m.done:
	default:
		t.Fatal("Stop returned with the goroutine still running")
	}
	m.Stop() // again: harmless
}

// Stop does not wait out a probe in flight: it abandons it, and the
// abandoned probe changes nothing. The timeout is an hour, so a Stop that
// waited for it would hang the test.
func TestStopAbandonsProbe(t *testing.T) {
	t.Parallel()
	entered := make(chan struct{})
	var once sync.Once
	srv := httptest.NewServer(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		once.Do(func() { close(entered) })
		<-r.Context().Done()
	}))
	t.Cleanup(srv.Close)
	initial := Result{StatusPassing, "before"}
	m, rec := start(t, Definition{HTTP: srv.URL, Interval: time.Hour, Timeout: time.Hour}, initial, nil)
	select {
	case <-entered:
	case <-time.After(deadline):
		t.Fatal("the check never reached the server")
	}
	stop(m, rec)
	if got := m.Result(); got != initial {
		t.Fatalf("Result after Stop = %v, want the initial %v", got, initial)
	}
	if n := rec.calls.Load(); n != 0 {
		t.Fatalf("%d notifies from an abandoned probe", n)
	}
}

// Heartbeat, Result and Stop from many goroutines at once; the race
// detector and the recorder's concurrency check do the asserting.
func TestConcurrentUse(t *testing.T) {
	t.Parallel()
	m, rec := start(t, Definition{TTL: time.Hour}, Result{Status: StatusCritical}, nil)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for j := range 200 {
				_ = m.Heartbeat([]string{"pass", "warn", "fail"}[(i+j)%3], "")
				_ = m.Result()
			}
		})
	}
	wg.Wait()
	if err := m.Heartbeat("pass", "done"); err != nil {
		t.Fatal(err)
	}
	// Coalesced or not, the last change is always delivered.
	rec.waitFor("the last heartbeat", func(r Result) bool { return r == Result{StatusPassing, "done"} })
}
