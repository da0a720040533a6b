package acl

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The `beacon acl` commands, the real binary against a real API with the
// gate: bootstrap through the socket, create, list, revoke; --token and
// BEACON_TOKEN; the errors a user sees.
func TestCLI(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "beacon")
	build := exec.Command("go", "build", "-o", bin, "github.com/beaconhq/beacon/cmd/beacon")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	a := startAgent(t, testEtcd(t), true)
	run := func(env []string, args ...string) (string, string, int) {
		t.Helper()
		cmd := exec.Command(bin, args...)
		cmd.Env = append(os.Environ(), "BEACON_AGENT=", "BEACON_TOKEN=")
		cmd.Env = append(cmd.Env, env...)
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return out.String(), strings.TrimSpace(errb.String()), code
	}

	// Bootstrap finds the socket in --data-dir.
	out, errs, code := run(nil, "acl", "bootstrap", "--data-dir", filepath.Dir(a.socket), "-w", "json")
	var boot struct {
		Secret string `json:"secret"`
		Token  struct {
			AccessorID string `json:"accessor_id"`
		} `json:"token"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &boot) != nil || boot.Secret == "" {
		t.Fatalf("bootstrap: exit %d, %q, %s", code, errs, out)
	}
	_, errs, code = run(nil, "acl", "bootstrap", "--agent", "unix:"+a.socket)
	if code != 1 || !strings.Contains(errs, "failed precondition: ACL bootstrap was already done") {
		t.Errorf("second bootstrap: exit %d, %q", code, errs)
	}

	// create with --token; list with BEACON_TOKEN.
	out, errs, code = run(nil, "--agent", a.tcp, "acl", "token", "create", "--token", boot.Secret,
		"--rule", "lock:batch-*:write", "--description", "batch jobs")
	if code != 0 || !strings.Contains(out, "lock:batch-*:write") || !strings.Contains(out, "batch jobs") {
		t.Fatalf("create: exit %d, %q, %s", code, errs, out)
	}
	accessor := strings.Fields(strings.Split(out, "\n")[1])[0]
	out, errs, code = run([]string{"BEACON_TOKEN=" + boot.Secret, "BEACON_AGENT=" + a.tcp}, "acl", "token", "list")
	if code != 0 || !strings.Contains(out, accessor) || !strings.Contains(out, boot.Token.AccessorID) || strings.Contains(out, boot.Secret) {
		t.Errorf("list: exit %d, %q, %s", code, errs, out)
	}

	// Without a token, and with a bad rule.
	_, errs, code = run([]string{"BEACON_AGENT=" + a.tcp}, "acl", "token", "list")
	if code != 1 || !strings.Contains(errs, "unauthenticated: ACLs are on: this call needs a token") {
		t.Errorf("list without a token: exit %d, %q", code, errs)
	}
	_, errs, code = run([]string{"BEACON_AGENT=" + a.tcp, "BEACON_TOKEN=" + boot.Secret}, "acl", "token", "create", "--rule", "locks:x:write")
	if code != 2 || !strings.Contains(errs, `kind "locks"`) {
		t.Errorf("create with a bad rule: exit %d, %q", code, errs)
	}

	out, errs, code = run([]string{"BEACON_AGENT=" + a.tcp, "BEACON_TOKEN=" + boot.Secret}, "acl", "token", "revoke", accessor)
	if code != 0 || !strings.Contains(out, "revoked "+accessor) {
		t.Errorf("revoke: exit %d, %q, %s", code, errs, out)
	}
	_, errs, code = run([]string{"BEACON_AGENT=" + a.tcp, "BEACON_TOKEN=" + boot.Secret}, "acl", "token", "revoke", accessor)
	if code != 1 || !strings.Contains(errs, "not found: no token has accessor id") {
		t.Errorf("revoke again: exit %d, %q", code, errs)
	}
}
