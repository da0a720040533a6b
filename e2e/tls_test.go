package e2e

import (
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/beaconhq/beacon/internal/testcluster"
	"github.com/beaconhq/beacon/pki"
)

// beacon tls init and cert make a CA and host certificates that check
// out; a second init overwrites nothing (exit 1), a bad flag is a usage
// error (exit 2), each in one line.
func TestTLSCommands(t *testing.T) {
	dir := t.TempDir()
	run := func(args ...string) (string, int) {
		_, stderr, err := testcluster.RunCLI(t, args...)
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return stderr, ee.ExitCode()
		}
		return stderr, 0
	}
	if stderr, code := run("tls", "init", "--dir", dir); code != 0 {
		t.Fatalf("tls init: exit %d: %s", code, stderr)
	}
	if stderr, code := run("tls", "cert", "--dir", dir, "--name", "n1", "--ip", "127.0.0.1", "--dns", "n1.example"); code != 0 {
		t.Fatalf("tls cert: exit %d: %s", code, stderr)
	}
	if stderr, code := run("tls", "cert", "--dir", dir, "--name", "ops", "--client"); code != 0 {
		t.Fatalf("tls cert --client: exit %d: %s", code, stderr)
	}
	cert, key := pki.CertFiles(dir, "n1")
	if err := pki.Check(filepath.Join(dir, pki.CAFile), cert, key, pki.Server, "127.0.0.1", "n1.example"); err != nil {
		t.Error(err)
	}
	ops, opsKey := pki.CertFiles(dir, "ops")
	if err := pki.Check(filepath.Join(dir, pki.CAFile), ops, opsKey, pki.Client); err != nil {
		t.Error(err)
	}
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"tls", "init", "--dir", dir}, 1, "already exists"},
		{[]string{"tls", "cert", "--dir", dir, "--name", "n1", "--ip", "127.0.0.2"}, 1, "already exists"},
		{[]string{"tls", "cert", "--dir", dir, "--name", "x", "--ip", "1.2.3"}, 2, "--ip"},
		{[]string{"tls", "cert", "--dir", dir, "--name", "x"}, 2, "--ip or --dns"},
		{[]string{"tls", "cert", "--dir", t.TempDir(), "--name", "x", "--client"}, 1, "beacon tls init"},
		{[]string{"tls", "init", "--dir", t.TempDir(), "--days", "0"}, 2, "--days"},
	} {
		stderr, code := run(tc.args...)
		if code != tc.code || !strings.Contains(stderr, tc.want) || strings.Count(stderr, "\n") != 1 {
			t.Errorf("beacon %s: exit %d, %q; want exit %d and one line with %q", strings.Join(tc.args, " "), code, stderr, tc.code, tc.want)
		}
	}
}
