package e2e

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/beaconhq/beacon/internal/testcluster"
)

// TestACLHTTPEndpoints: with ACLs on, /metrics (whose labels name the
// agent's queues and services) and the profiler need a token granting
// operator:metrics:read or operator:debug:read, as an API call would:
// 401 without one, 403 naming the need with another, 200 with it. The
// probes (/health, /ready, /version) stay open.
func TestACLHTTPEndpoints(t *testing.T) {
	c := testcluster.New(t)
	a := c.Host("a")
	a.Start("--acl", "--enable-debug")
	a.WaitReady(readyWithin)
	mgmt := aclBootstrap(t, a)
	locks := aclCreate(t, a, mgmt.Secret, "lock:*:write")
	scrape := aclCreate(t, a, mgmt.Secret, "operator:metrics:read")

	get := func(path, secret string) (int, string) {
		t.Helper()
		req, err := http.NewRequest(http.MethodGet, "http://"+a.HTTPAddr+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		if secret != "" {
			req.Header.Set("Authorization", "Bearer "+secret)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		return resp.StatusCode, string(body)
	}
	for _, c := range []struct {
		path, secret string
		code         int
		want         string
	}{
		{"/metrics", "", http.StatusUnauthorized, "needs a token"},
		{"/metrics", strings.Repeat("ab", 32), http.StatusUnauthorized, "not known"},
		{"/metrics", locks.Secret, http.StatusForbidden, "operator:metrics:read"},
		{"/metrics", scrape.Secret, http.StatusOK, "beacon_sessions_open"},
		{"/metrics", mgmt.Secret, http.StatusOK, "beacon_sessions_open"},
		{"/debug/pprof/", "", http.StatusUnauthorized, "needs a token"},
		{"/debug/pprof/", scrape.Secret, http.StatusForbidden, "operator:debug:read"},
		{"/debug/pprof/", mgmt.Secret, http.StatusOK, "goroutine"},
		{"/health", "", http.StatusOK, "alive"},
		{"/ready", "", http.StatusOK, "ready"},
		{"/version", "", http.StatusOK, "version"},
	} {
		code, body := get(c.path, c.secret)
		if code != c.code || !strings.Contains(body, c.want) {
			t.Errorf("GET %s with %q: %d %.200q; want %d and %q", c.path, c.secret, code, body, c.code, c.want)
		}
	}
}
