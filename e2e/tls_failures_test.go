package e2e

import (
	"errors"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/beaconhq/beacon/internal/testcluster"
	"github.com/beaconhq/beacon/pki"
)

// TestTLSCertificateFailuresStopAgent: each classic certificate mistake
// stops the agent at start, before it creates its data dir, with one line
// that names the certificate file and the cause; the CLI likewise.
func TestTLSCertificateFailuresStopAgent(t *testing.T) {
	p := newFleetPKI(t)
	other := newFleetPKI(t)
	c := testcluster.New(t)

	a := c.Host("n1")
	a.ClientURL = strings.Replace(a.ClientURL, "http://", "https://", 1)
	a.PeerURL = strings.Replace(a.PeerURL, "http://", "https://", 1)

	// The peer certificate lacks the host's IP (only 127.0.0.1).
	p.host("noip", "127.0.0.1")
	noIP, _ := pki.CertFiles(p.dir, "noip")
	// Expired yesterday, with the right IP.
	expiredOn := p.issueExpired("old", a.IP, "127.0.0.1")
	old, _ := pki.CertFiles(p.dir, "old")
	// Signed by another CA, with the right IP; ca-file is this fleet's.
	other.host("stranger", a.IP, "127.0.0.1")
	stranger, strangerKey := pki.CertFiles(other.dir, "stranger")
	// A client certificate where a server's is needed.
	p.client("cli-only")
	cliOnly, _ := pki.CertFiles(p.dir, "cli-only")

	for _, tc := range []struct {
		what  string
		flags []string
		want  []string
	}{
		{"the host's IP missing from the SANs", p.flags("noip"), []string{noIP, "does not cover " + a.IP, "--ip " + a.IP}},
		{"expired", p.flags("old"), []string{old, "expired on " + expiredOn.Format(time.RFC3339)}},
		{"another CA", []string{"--ca-file", p.ca(), "--cert-file", stranger, "--key-file", strangerKey}, []string{stranger, "was not signed by the CA in " + p.ca()}},
		{"a client-only certificate", p.flags("cli-only"), []string{cliOnly, "is not for server use"}},
	} {
		t.Run(tc.what, func(t *testing.T) {
			if err := os.RemoveAll(a.DataDir); err != nil {
				t.Fatal(err)
			}
			a.Start(tc.flags...)
			err := a.WaitExit(60 * time.Second)
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() == 0 {
				t.Fatalf("the agent did not fail: %v; log:\n%s", err, a.Log())
			}
			log := strings.TrimRight(a.Log(), "\n")
			if strings.Contains(log, "\n") {
				t.Errorf("want one line, got:\n%s", log)
			}
			for _, w := range tc.want {
				if !strings.Contains(log, w) {
					t.Errorf("the line lacks %q: %s", w, log)
				}
			}
			if _, err := os.Stat(a.DataDir); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("the data dir was created: %v", err)
			}
		})
	}

	// The CLI: an expired client certificate, before any dial.
	p.client("ops")
	expiredCLI := p.issueExpired("old-ops")
	oldOps, oldOpsKey := pki.CertFiles(p.dir, "old-ops")
	_, stderr, err := testcluster.RunCLI(t, "members", "--agent", a.APIAddr, "--ca-file", p.ca(), "--cert-file", oldOps, "--key-file", oldOpsKey)
	if err == nil || strings.Count(stderr, "\n") != 1 || !strings.Contains(stderr, oldOps) ||
		!strings.Contains(stderr, "expired on "+expiredCLI.Format(time.RFC3339)) {
		t.Errorf("beacon members with an expired client certificate: %v: %q", err, stderr)
	}
	_, stderr, err = testcluster.RunCLI(t, "members", "--agent", a.APIAddr, "--ca-file", p.ca())
	if err == nil || !strings.Contains(stderr, "--cert-file") {
		t.Errorf("beacon members with --ca-file alone: %v: %q", err, stderr)
	}
}

// TestDebugEndpointsOnlyWhenEnabled: pprof on http-addr and etcd's
// /debug/vars (the full command line) and pprof on the client URL are
// served only with --enable-debug, even at log level debug (which makes
// etcd mount pprof by itself).
func TestDebugEndpointsOnlyWhenEnabled(t *testing.T) {
	c := testcluster.New(t)
	get := func(url string) int {
		t.Helper()
		hc := &http.Client{Timeout: 10 * time.Second}
		resp, err := hc.Get(url)
		if err != nil {
			t.Fatalf("GET %s: %v", url, err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	paths := func(a *testcluster.Agent) []string {
		return []string{"http://" + a.HTTPAddr + "/debug/pprof/", "http://" + a.HTTPAddr + "/debug/pprof/goroutine",
			a.ClientURL + "/debug/vars", a.ClientURL + "/debug/pprof/", a.ClientURL + "/debug/pprof/cmdline",
			a.ClientURL + "/debug/requests"}
	}
	off := c.Host("off")
	off.Start("--log-level", "debug")
	off.WaitReady(readyWithin)
	for _, u := range paths(off) {
		if code := get(u); code != http.StatusNotFound {
			t.Errorf("without --enable-debug, %s answered %d", u, code)
		}
	}
	if code := get(off.ClientURL + "/health"); code != http.StatusOK {
		t.Errorf("etcd's /health: %d", code)
	}
	on := c.Host("on")
	on.Start("--enable-debug")
	on.WaitReady(readyWithin)
	for _, u := range paths(on)[:5] {
		if code := get(u); code != http.StatusOK {
			t.Errorf("with --enable-debug, %s answered %d", u, code)
		}
	}
}
