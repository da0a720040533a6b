package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/beaconhq/beacon/internal/testcluster"
)

// TestTemplateBlocks: a templates: block in the agent's config file is
// rendered by the agent from config keys, follows changes, and follows
// the file on SIGHUP; a bad block stops the agent naming it.
func TestTemplateBlocks(t *testing.T) {
	dir := t.TempDir()
	tmpl := filepath.Join(dir, "app.tmpl")
	out := filepath.Join(dir, "app.conf")
	out2 := filepath.Join(dir, "app2.conf")
	if err := os.WriteFile(tmpl, []byte(`port={{ key "app/port" }}`+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, write := configFile(t)
	write(fmt.Sprintf("templates:\n  - template: %s\n    out: %s\n    wait: 10ms:100ms\n", tmpl, out))

	c := testcluster.New(t)
	a := c.Host("a")
	a.Start("--config", cfg)
	a.WaitReady(readyWithin)
	if _, stderr, err := a.CLI("config", "put", "app/port", "8080"); err != nil {
		t.Fatalf("config put: %v %s", err, stderr)
	}
	waitFile(t, out, "port=8080\n")
	if _, stderr, err := a.CLI("config", "put", "app/port", "9090"); err != nil {
		t.Fatalf("config put: %v %s", err, stderr)
	}
	waitFile(t, out, "port=9090\n")

	write(fmt.Sprintf("templates:\n  - template: %s\n    out: %s\n", tmpl, out2))
	if err := syscall.Kill(a.Pid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFile(t, out2, "port=9090\n")
	if err := a.Stop(); err != nil {
		t.Fatal(err)
	}

	write(fmt.Sprintf("templates:\n  - template: %s\n", filepath.Join(dir, "missing.tmpl")))
	bad := c.Host("bad")
	line := refused(t, bad, nil, append(append([]string{"agent"}, bad.Args()...), "--config", cfg)...)
	if !strings.Contains(line, "templates[0]") {
		t.Fatalf("bad templates block: %q", line)
	}
}

func waitFile(t *testing.T, path, want string) {
	t.Helper()
	var got []byte
	err := testcluster.Eventually(30*time.Second, func() error {
		got, _ = os.ReadFile(path)
		if string(got) == want {
			return nil
		}
		return errNotYet
	})
	if err != nil {
		t.Fatalf("%s: want %q, have %q", path, want, got)
	}
}
