package supervise

import (
	"fmt"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/beaconhq/beacon/internal/holdclock"
)

// The test binary doubles as the guard process.
func TestMain(m *testing.M) {
	if os.Getenv("BEACON_TEST_GUARD") == "1" {
		if err := Guard(os.Stdin); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func guardArgs(t *testing.T) []string {
	t.Helper()
	t.Setenv("BEACON_TEST_GUARD", "1")
	return []string{os.Args[0]}
}

// A parent that is alive but does not act (paused) cannot kill CMD at its
// deadline; the guard does, at the last deadline it was told.
func TestGuardKillsAtTheDeadline(t *testing.T) {
	c, err := StartCommand(CommandOptions{Args: []string{"sh", "-c", "trap '' TERM; while :; do sleep 0.01; done"},
		Env: os.Environ(), GuardArgs: guardArgs(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Finish()
	c.SetKillDeadline(holdclock.Now() + time.Hour)
	c.SetKillDeadline(holdclock.Now() + 300*time.Millisecond) // moved earlier: the latest counts
	select {
	case <-c.Done():
	case <-time.After(30 * time.Second):
		c.Kill()
		t.Fatal("the guard did not kill CMD at its deadline")
	}
	if code := c.Finish(); code != 128+int(syscall.SIGKILL) {
		t.Errorf("CMD ended with %d, want SIGKILL", code)
	}
}

// A deadline moved later keeps CMD alive past the first one.
func TestGuardFollowsMovedDeadline(t *testing.T) {
	c, err := StartCommand(CommandOptions{Args: []string{"sh", "-c", "sleep 1; exit 7"},
		Env: os.Environ(), GuardArgs: guardArgs(t)})
	if err != nil {
		t.Fatal(err)
	}
	c.SetKillDeadline(holdclock.Now() + 100*time.Millisecond)
	c.SetKillDeadline(holdclock.Now() + time.Hour)
	if code := c.Finish(); code != 7 {
		t.Errorf("CMD ended with %d, want its own 7", code)
	}
}
