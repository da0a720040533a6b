package e2e

import (
	"bytes"
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/beaconhq/beacon/internal/testcluster"
)

// TestCmdGuardNames: the guard process of a hold's CMD answers to
// cmd-guard and to its old name lock-guard, and --help lists neither.
func TestCmdGuardNames(t *testing.T) {
	bin := testcluster.Binary(t)
	for _, name := range []string{"cmd-guard", "lock-guard"} {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		cmd := exec.CommandContext(ctx, bin, name)
		cmd.Stdin = strings.NewReader("not-a-group\n")
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		err := cmd.Run()
		cancel()
		if err == nil || !strings.Contains(stderr.String(), "is not a process group id") {
			t.Errorf("beacon %s: %v, stderr %q; want the guard's refusal of a bad group id", name, err, stderr.String())
		}
	}
	out, err := exec.Command(bin, "--help").CombinedOutput()
	if err != nil {
		t.Fatalf("beacon --help: %v\n%s", err, out)
	}
	if strings.Contains(string(out), "guard") {
		t.Errorf("beacon --help lists a guard command:\n%s", out)
	}
}
