package healthcheck

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestMain lowers the interval floor so checks can run every few
// milliseconds; every test then finishes in well under a second or two.
func TestMain(m *testing.M) {
	minInterval = 5 * time.Millisecond
	os.Exit(m.Run())
}

// deadline bounds every wait on a condition. It is generous on purpose:
// it only decides how long a broken test takes to fail.
const deadline = 10 * time.Second

// event is one notify call, with when it came and, if the test counts
// requests, how many the server had seen by then.
type event struct {
	Result
	at   time.Time
	hits int64
}

func (e event) String() string { return fmt.Sprintf("%s %q (hit %d)", e.Status, e.Output, e.hits) }

// recorder is a notify callback that feeds a channel the test waits on.
type recorder struct {
	t      *testing.T
	events chan event
	hits   func() int64 // may be nil
	closed atomic.Bool  // set once Stop has returned: any notify then is a bug
	calls  atomic.Int64
	busy   atomic.Bool // catches concurrent notify calls
}

func newRecorder(t *testing.T, hits func() int64) *recorder {
	return &recorder{t: t, events: make(chan event, 1024), hits: hits}
}

func (r *recorder) notify(res Result) {
	if !r.busy.CompareAndSwap(false, true) {
		r.t.Errorf("notify called concurrently")
	}
	defer r.busy.Store(false)
	if r.closed.Load() {
		r.t.Errorf("notify(%v) after Stop returned", res)
	}
	r.calls.Add(1)
	e := event{Result: res, at: time.Now()}
	if r.hits != nil {
		e.hits = r.hits()
	}
	select {
	case r.events <- e:
	default:
		r.t.Errorf("recorder full")
	}
}

// next returns the next notify, failing the test if none comes in time.
func (r *recorder) next() event {
	r.t.Helper()
	select {
	case e := <-r.events:
		return e
	case <-time.After(deadline):
		r.t.Fatalf("no notify within %s", deadline)
		return event{}
	}
}

// waitFor skips notifies until one satisfies ok. It is for live servers
// whose intermediate results the test does not pin down.
func (r *recorder) waitFor(what string, ok func(Result) bool) event {
	r.t.Helper()
	timeout := time.After(deadline)
	var seen []event
	for {
		select {
		case e := <-r.events:
			if ok(e.Result) {
				return e
			}
			seen = append(seen, e)
		case <-timeout:
			r.t.Fatalf("no notify with %s within %s; saw %v", what, deadline, seen)
		}
	}
}

func (r *recorder) waitStatus(status string) event {
	r.t.Helper()
	return r.waitFor("status "+status, func(res Result) bool { return res.Status == status })
}

// eventually polls cond until it holds, for conditions no callback
// announces (such as a server's request count).
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	end := time.Now().Add(deadline)
	for !cond() {
		if time.Now().After(end) {
			t.Fatalf("no %s within %s", what, deadline)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// start starts a monitor whose notify goes to a new recorder, and stops it
// when the test ends.
func start(t *testing.T, def Definition, initial Result, hits func() int64) (*Monitor, *recorder) {
	t.Helper()
	if err := def.Normalize(); err != nil {
		t.Fatalf("Normalize(%+v): %v", def, err)
	}
	rec := newRecorder(t, hits)
	m := Start(def, initial, rec.notify, nil)
	t.Cleanup(func() {
		m.Stop()
		rec.closed.Store(true)
	})
	return m, rec
}

// stop stops m and marks rec so that any later notify fails the test.
func stop(m *Monitor, rec *recorder) {
	m.Stop()
	rec.closed.Store(true)
}

// scriptServer answers the nth request with script[n-1], then with
// fallback; it counts requests so tests can say exactly which check caused
// which transition.
type scriptServer struct {
	*httptest.Server
	hits     atomic.Int64
	mu       sync.Mutex
	script   []int
	fallback int
}

func newScriptServer(t *testing.T, fallback int, script ...int) *scriptServer {
	s := &scriptServer{script: script, fallback: fallback}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		n := s.hits.Add(1)
		s.mu.Lock()
		code := s.fallback
		if int(n) <= len(s.script) {
			code = s.script[n-1]
		}
		s.mu.Unlock()
		w.WriteHeader(code)
	}))
	t.Cleanup(s.Close)
	return s
}

// set changes what every later request gets.
func (s *scriptServer) set(code int) {
	s.mu.Lock()
	s.script, s.fallback = nil, code
	s.mu.Unlock()
}

func (s *scriptServer) count() int64 { return s.hits.Load() }
