package healthcheck

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestHTTPStatuses(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		code   int
		status string
		output string
	}{
		{200, StatusPassing, "200 OK"},
		{204, StatusPassing, "204 No Content"},
		{429, StatusWarning, "429 Too Many Requests"},
		{500, StatusCritical, "500 Internal Server Error"},
		{404, StatusCritical, "404 Not Found"},
	} {
		t.Run(c.output, func(t *testing.T) {
			t.Parallel()
			srv := newScriptServer(t, c.code)
			_, rec := start(t, Definition{HTTP: srv.URL + "/health", Interval: 20 * time.Millisecond},
				Result{Status: StatusCritical, Output: "not checked yet"}, nil)
			e := rec.next() // even critical to critical: the output changed
			want := Result{c.status, "HTTP GET " + srv.URL + "/health: " + c.output}
			if e.Result != want {
				t.Fatalf("got %v, want %v", e.Result, want)
			}
		})
	}
}

// The first check runs at once: with an hour between checks, the only way
// to hear anything within the test's deadline is a check at Start.
func TestFirstCheckAtOnce(t *testing.T) {
	t.Parallel()
	srv := newScriptServer(t, 200)
	_, rec := start(t, Definition{HTTP: srv.URL, Interval: time.Hour}, Result{Status: StatusCritical}, srv.count)
	if e := rec.next(); e.Status != StatusPassing || e.hits != 1 {
		t.Fatalf("got %v, want passing after the first request", e)
	}
}

func TestHTTPSwitchMidTest(t *testing.T) {
	t.Parallel()
	srv := newScriptServer(t, 200)
	_, rec := start(t, Definition{HTTP: srv.URL, Interval: 20 * time.Millisecond}, Result{Status: StatusCritical}, nil)
	rec.waitStatus(StatusPassing)
	srv.set(503)
	if e := rec.waitStatus(StatusCritical); !strings.HasSuffix(e.Output, ": 503 Service Unavailable") {
		t.Fatalf("output %q", e.Output)
	}
	srv.set(429)
	rec.waitStatus(StatusWarning)
	srv.set(200)
	rec.waitStatus(StatusPassing)
}

// A server that never answers is critical once Timeout passes, and the
// output says so.
func TestHTTPTimeout(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(release) })
	_, rec := start(t, Definition{HTTP: srv.URL, Interval: 50 * time.Millisecond, Timeout: 30 * time.Millisecond},
		Result{Status: StatusPassing}, nil)
	e := rec.next()
	if want := (Result{StatusCritical, "HTTP GET " + srv.URL + ": timed out after 30ms"}); e.Result != want {
		t.Fatalf("got %v, want %v", e.Result, want)
	}
}

func TestHTTPConnectionRefused(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close()
	_, rec := start(t, Definition{HTTP: url, Interval: 20 * time.Millisecond}, Result{Status: StatusPassing}, nil)
	if e := rec.next(); e.Status != StatusCritical || !strings.Contains(e.Output, "connection refused") {
		t.Fatalf("got %v", e)
	}
}

// Redirects are followed, but only so far: a loop ends in critical with the
// last 3xx as the output.
func TestHTTPRedirects(t *testing.T) {
	t.Parallel()
	var loops atomic.Int64
	mux := http.NewServeMux()
	mux.HandleFunc("/ok", func(w http.ResponseWriter, _ *http.Request) {})
	mux.HandleFunc("/moved", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/ok", http.StatusFound) })
	mux.HandleFunc("/loop", func(w http.ResponseWriter, r *http.Request) {
		loops.Add(1)
		http.Redirect(w, r, "/loop", http.StatusFound)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)

	_, rec := start(t, Definition{HTTP: srv.URL + "/moved", Interval: time.Hour}, Result{Status: StatusCritical}, nil)
	if e := rec.next(); e.Result != (Result{StatusPassing, "HTTP GET " + srv.URL + "/moved: 200 OK"}) {
		t.Fatalf("redirect to a 200: got %v", e)
	}

	_, rec = start(t, Definition{HTTP: srv.URL + "/loop", Interval: time.Hour}, Result{Status: StatusPassing}, nil)
	if e := rec.next(); e.Result != (Result{StatusCritical, "HTTP GET " + srv.URL + "/loop: 302 Found"}) {
		t.Fatalf("redirect loop: got %v", e)
	}
	if n := loops.Load(); n != maxRedirects {
		t.Fatalf("followed %d requests in the loop, want %d", n, maxRedirects)
	}
}

// The body is never read: an endless one costs nothing and the check passes
// well inside its timeout.
func TestHTTPEndlessBody(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		chunk := []byte(strings.Repeat("x", 32<<10))
		for r.Context().Err() == nil {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	}))
	t.Cleanup(srv.Close)
	_, rec := start(t, Definition{HTTP: srv.URL, Interval: time.Hour, Timeout: time.Hour}, Result{Status: StatusCritical}, nil)
	if e := rec.next(); e.Status != StatusPassing {
		t.Fatalf("got %v", e)
	}
}

// A password in the URL is checked with but never shown in the output.
func TestHTTPOutputRedactsPassword(t *testing.T) {
	t.Parallel()
	srv := newScriptServer(t, 200)
	u := strings.Replace(srv.URL, "http://", "http://user:secret@", 1)
	_, rec := start(t, Definition{HTTP: u, Interval: time.Hour}, Result{Status: StatusCritical}, nil)
	if e := rec.next(); strings.Contains(e.Output, "secret") || !strings.Contains(e.Output, "user:xxxxx@") {
		t.Fatalf("output %q", e.Output)
	}
}
