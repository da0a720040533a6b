package e2e

import (
	"strings"
	"testing"

	"github.com/beaconhq/beacon/internal/testcluster"
)

// TestCLIErrors: client commands fail with one line and a non-zero exit
// when the agent is down or the arguments are wrong.
func TestCLIErrors(t *testing.T) {
	cases := []struct {
		args []string
		want []string
	}{
		{[]string{"members", "--agent", "127.0.0.1:1"}, []string{"unavailable", "cannot reach the agent"}},
		{[]string{"status", "--agent", "127.0.0.1:1", "-w", "json"}, []string{"unavailable"}},
		{[]string{"members", "-w", "yaml"}, []string{"-w", "table or json"}},
		{[]string{"members", "extra"}, []string{"unknown command", "extra"}},
		{[]string{"agent", "--no-such-flag"}, []string{"no-such-flag"}},
		{[]string{"bench", "agent", "--runs", "0"}, []string{"--runs"}},
	}
	for _, tc := range cases {
		_, stderr, err := testcluster.RunCLI(t, tc.args...)
		if err == nil {
			t.Errorf("beacon %v succeeded", tc.args)
			continue
		}
		line := strings.TrimSpace(stderr)
		if strings.Contains(line, "\n") || !strings.HasPrefix(line, "beacon: ") {
			t.Errorf("beacon %v: want one error line, got %q", tc.args, stderr)
		}
		for _, w := range tc.want {
			if !strings.Contains(line, w) {
				t.Errorf("beacon %v: %q lacks %q", tc.args, line, w)
			}
		}
	}
	out, _, err := testcluster.RunCLI(t, "version")
	if err != nil || !strings.HasPrefix(out, "beacon ") {
		t.Fatalf("beacon version: %q %v", out, err)
	}
}
