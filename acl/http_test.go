package acl

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestHTTPGateBeforeTokensLoad: with ACLs on and no tokens loaded yet an
// endpoint answers 503 naming why; with ACLs off it serves. (Tokens and
// rules: e2e/TestACLHTTPEndpoints.)
func TestHTTPGateBeforeTokensLoad(t *testing.T) {
	ok := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusTeapot) })
	need := Need{Kind: KindOperator, Name: OperatorMetrics, Access: AccessRead}
	for _, c := range []struct {
		enabled bool
		code    int
		body    string
	}{{false, http.StatusTeapot, ""}, {true, http.StatusServiceUnavailable, "not loaded"}} {
		rec := httptest.NewRecorder()
		NewGate(c.enabled, "/beacon/").HTTP(need, ok).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
		if rec.Code != c.code || !strings.Contains(rec.Body.String(), c.body) {
			t.Errorf("enabled %v: %d %q, want %d %q", c.enabled, rec.Code, rec.Body, c.code, c.body)
		}
	}
}

func TestTokenOfRequest(t *testing.T) {
	for _, c := range []struct{ header, value, want string }{
		{"Authorization", "Bearer s3cret", "s3cret"},
		{"Authorization", "bearer  s3cret ", "s3cret"},
		{"Authorization", "Basic dXNlcg==", ""},
		{"X-Beacon-Token", "s3cret", "s3cret"},
	} {
		r := httptest.NewRequest(http.MethodGet, "/metrics", nil)
		r.Header.Set(c.header, c.value)
		if got := tokenOfRequest(r); got != c.want {
			t.Errorf("%s: %q: %q, want %q", c.header, c.value, got, c.want)
		}
	}
}
