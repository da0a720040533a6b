package e2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/beaconhq/beacon/internal/testcluster"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// holdActs is the CMD of the hold tests: it ignores SIGTERM, as a busy job
// may, and appends the machine's clock (ns) to the file $0 every 20 ms for
// as long as it runs. Its last line is its last act.
const holdActs = `trap '' TERM; while :; do date +%s%N >> "$0"; sleep 0.02; done`

// holdArgs is the CLI that runs holdActs under a hold of kind on agent a.
func holdArgs(kind, name string, a *testcluster.Agent, acts string) []string {
	var args []string
	switch kind {
	case "lock":
		args = []string{"lock", name}
	case "elect":
		args = []string{"elect", name}
	case "queue":
		args = []string{"queue", "reserve", name, "--wait", "60s"}
	}
	return append(args, "--ttl", "2s", "--agent", a.APIAddr, "--", "sh", "-c", holdActs, acts)
}

// holdReadActs reads the times a CMD acted at.
func holdReadActs(t *testing.T, path string) []int64 {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var acts []int64
	for _, line := range strings.Split(string(b), "\n") {
		if n, err := strconv.ParseInt(strings.TrimSpace(line), 10, 64); err == nil {
			acts = append(acts, n)
		}
	}
	return acts
}

func holdWaitActs(t *testing.T, path string, n int, d time.Duration) {
	t.Helper()
	if err := holdWaitActsErr(t, path, n, d); err != nil {
		t.Fatal(err)
	}
}

func holdWaitActsErr(t *testing.T, path string, n int, d time.Duration) error {
	t.Helper()
	return testcluster.Eventually(d, func() error {
		if got := len(holdReadActs(t, path)); got < n {
			return fmt.Errorf("%s: %d acts, want %d", filepath.Base(path), got, n)
		}
		return nil
	})
}

// holdNoOverlap fails unless every act of the old holder's CMD precedes
// every act of the new one's.
func holdNoOverlap(t *testing.T, oldActs, newActs string) {
	t.Helper()
	o, n := holdReadActs(t, oldActs), holdReadActs(t, newActs)
	if len(o) == 0 || len(n) == 0 {
		t.Fatalf("acts: old %d, new %d; both must have acted", len(o), len(n))
	}
	last, first := slices.Max(o), slices.Min(n)
	if last >= first {
		t.Fatalf("the old holder's CMD acted %s after the new holder's first act", time.Duration(last-first))
	}
	t.Logf("the old CMD's last act was %s before the new CMD's first", time.Duration(first-last).Round(time.Millisecond))
}

// The holder's agent is paused (SIGSTOP) past the session TTL: the cluster
// expires the lease and grants the hold elsewhere. The old holder's CMD,
// which ignores SIGTERM, must be dead by then: beacon kills it at its own
// deadline, without word from the paused agent.
func TestHoldAgentPaused(t *testing.T) {
	c := testcluster.New(t)
	agents := startStatic(t, c, 3)
	holderAgent, other := agents[2], agents[0]
	for _, kind := range []string{"lock", "elect", "queue"} {
		t.Run(kind, func(t *testing.T) {
			name := "paused-" + kind
			if kind == "queue" {
				if _, stderr, err := other.CLI("queue", "push", name, "job"); err != nil {
					t.Fatalf("push: %v: %s", err, stderr)
				}
			}
			holder, contender, oldActs, newActs := holdPair(t, kind, name, holderAgent, other)

			pid := holderAgent.Pid()
			if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
				t.Fatal(err)
			}
			resumed := false
			resume := func() {
				if !resumed {
					resumed = true
					_ = syscall.Kill(pid, syscall.SIGCONT)
				}
			}
			t.Cleanup(resume)
			if err := holdWaitActsErr(t, newActs, 3, 30*time.Second); err != nil {
				t.Fatalf("%v; contender: %s", err, contender.output())
			}
			resume()
			holdNoOverlap(t, oldActs, newActs)
			if kind != "elect" { // elect campaigns again; lock and the worker give up
				if code := holder.exitCode(t, 30*time.Second); code == 0 {
					t.Errorf("the holder exited 0 after losing its hold: %s", holder.output())
				} else if out := holder.output(); !strings.Contains(out, "lost") {
					t.Errorf("the holder's error does not say the hold was lost: %s", out)
				}
			}
			_ = contender.cmd.Process.Signal(syscall.SIGKILL)
			_ = holder.cmd.Process.Signal(syscall.SIGKILL)
		})
	}
}

// holdPair starts a holder of kind on agent h and, once its CMD acts, a
// contender on agent o, standing in line.
func holdPair(t *testing.T, kind, name string, h, o *testcluster.Agent) (holder, contender *lockProc, oldActs, newActs string) {
	t.Helper()
	dir := t.TempDir()
	oldActs, newActs = filepath.Join(dir, "old.acts"), filepath.Join(dir, "new.acts")
	holder = lockStart(t, dir, "holder", holdArgs(kind, name, h, oldActs)...)
	holdWaitActs(t, oldActs, 3, 30*time.Second)
	contender = lockStart(t, dir, "contender", holdArgs(kind, name, o, newActs)...)
	holdWaitContending(t, o, kind, name)
	if n := len(holdReadActs(t, newActs)); n != 0 {
		t.Fatalf("the contender acted %d times while the holder held", n)
	}
	return holder, contender, oldActs, newActs
}

// holdWaitContending waits until the contender stands in line (lock,
// elect); a queue worker just waits for a message.
func holdWaitContending(t *testing.T, a *testcluster.Agent, kind, name string) {
	t.Helper()
	prefix := map[string]string{"lock": "/beacon/locks/", "elect": "/beacon/elections/"}[kind]
	if prefix == "" {
		return
	}
	cli := a.Client()
	err := testcluster.Eventually(30*time.Second, func() error {
		resp, err := cli.Get(context.Background(), prefix+name+"/", clientv3.WithPrefix(), clientv3.WithCountOnly())
		if err != nil {
			return err
		}
		if resp.Count != 2 {
			return fmt.Errorf("%d keys under %s%s/, want 2", resp.Count, prefix, name)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// The holding CLI itself is paused past its TTL. Its agent keeps the
// lease alive meanwhile, so nobody else is granted the lock; on resume the
// CLI's deadline has passed, and it kills CMD at once (CMD ignores
// SIGTERM) and gives the lock up.
func TestHoldCLIPaused(t *testing.T) {
	c := testcluster.New(t)
	agents := startStatic(t, c, 3)
	holder, contender, oldActs, newActs := holdPair(t, "lock", "cli-paused", agents[2], agents[0])

	pid := holder.cmd.Process.Pid
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	defer syscall.Kill(pid, syscall.SIGCONT)
	// Past the TTL with the CLI stopped; the agent keeps the lease, so the
	// contender must not act. This wait is the fault's length, not a hope.
	time.Sleep(3 * time.Second)
	if n := len(holdReadActs(t, newActs)); n != 0 {
		t.Fatalf("the contender acted %d times while the paused holder's lease lived", n)
	}
	_ = syscall.Kill(pid, syscall.SIGCONT)
	holdWaitActs(t, newActs, 3, 30*time.Second)
	holdNoOverlap(t, oldActs, newActs)
	if code := holder.exitCode(t, 30*time.Second); code == 0 {
		t.Errorf("the paused holder exited 0: %s", holder.output())
	}
	_ = contender.cmd.Process.Signal(syscall.SIGKILL)
}

// The holder's agent is stopped (SIGTERM). It tells its holders, which
// stop CMD (SIGTERM, then SIGKILL after --grace: CMD ignores SIGTERM) and
// give the hold up; only then does the agent revoke the lease, so the
// contender on another agent gets it at once and never overlaps CMD.
func TestHoldAgentStops(t *testing.T) {
	c := testcluster.New(t)
	agents := startStatic(t, c, 3)
	holder, contender, oldActs, newActs := holdPair(t, "lock", "agent-stops", agents[2], agents[0])

	if err := agents[2].Stop(); err != nil {
		t.Fatalf("the agent's stop: %v", err)
	}
	if err := holdWaitActsErr(t, newActs, 3, 30*time.Second); err != nil {
		t.Fatalf("%v; contender: %s; holder: %s", err, contender.output(), holder.output())
	}
	holdNoOverlap(t, oldActs, newActs)
	if code := holder.exitCode(t, 30*time.Second); code == 0 {
		t.Errorf("the holder exited 0 after its agent stopped: %s", holder.output())
	} else if out := holder.output(); !strings.Contains(out, "stopping") {
		t.Errorf("the holder's error does not say the agent is stopping: %s", out)
	}
	_ = contender.cmd.Process.Signal(syscall.SIGKILL)
}

// A leader fences its writes with its key and rev, like a lock holder; a
// superseded leader's fenced write is refused and nothing is written.
func TestElectFencedWrites(t *testing.T) {
	a, _ := lockOneAgent(t)
	dir := t.TempDir()
	leaderCmd := `echo "$BEACON_LEADER_KEY $BEACON_LEADER_REV" > "$0"; sleep 300`
	first := lockStart(t, dir, "first", "elect", "fenced-e", "--agent", a.APIAddr, "--", "sh", "-c", leaderCmd, filepath.Join(dir, "first"))
	oldKey, oldRev := holdLeader(t, filepath.Join(dir, "first"))
	if _, stderr, err := a.CLI("fenced", "put", "/fenced-e/x", "first", "--lock-key", oldKey, "--token", oldRev); err != nil {
		t.Fatalf("the leader's fenced write: %v: %s", err, stderr)
	}
	second := lockStart(t, dir, "second", "elect", "fenced-e", "--agent", a.APIAddr, "--", "sh", "-c", leaderCmd, filepath.Join(dir, "second"))
	_ = first.cmd.Process.Kill() // the agent revokes its session: the second leads
	newKey, newRev := holdLeader(t, filepath.Join(dir, "second"))
	_, stderr, err := a.CLI("fenced", "put", "/fenced-e/x", "stale", "--lock-key", oldKey, "--token", oldRev)
	if err == nil || !strings.Contains(stderr, "failed precondition") {
		t.Fatalf("a superseded leader's fenced write: err %v, stderr %q; want failed precondition", err, stderr)
	}
	if _, stderr, err := a.CLI("fenced", "put", "/fenced-e/x", "second", "--lock-key", newKey, "--token", newRev); err != nil {
		t.Fatalf("the new leader's fenced write: %v: %s", err, stderr)
	}
	out, stderr, err := a.CLI("fenced", "get", "/fenced-e/x", "--lock-key", newKey, "--token", newRev)
	if err != nil || strings.TrimSpace(out) != "second" {
		t.Fatalf("fenced get: %q, %v: %s", out, err, stderr)
	}
	_ = second.cmd.Process.Kill()
}

// holdLeader waits for a leader's CMD to write its key and rev to path.
func holdLeader(t *testing.T, path string) (key, rev string) {
	t.Helper()
	err := testcluster.Eventually(30*time.Second, func() error {
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		f := strings.Fields(string(b))
		if len(f) != 2 {
			return fmt.Errorf("%s: %q", path, b)
		}
		key, rev = f[0], f[1]
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return key, rev
}

// --grace must be smaller than --ttl (and, for a worker, --visibility):
// refused before anything is held, naming both.
func TestHoldGraceFlag(t *testing.T) {
	for _, args := range [][]string{
		{"lock", "g", "--ttl", "2s", "--grace", "2s", "--", "true"},
		{"elect", "g", "--ttl", "3s", "--grace", "5s", "--", "true"},
		{"queue", "reserve", "g", "--ttl", "2s", "--grace", "3s", "--", "true"},
		{"queue", "reserve", "g", "--visibility", "1s", "--grace", "1s", "--", "true"},
	} {
		_, stderr, err := testcluster.RunCLI(t, append(args, "--agent", "127.0.0.1:1")...)
		var ee *exec.ExitError
		code := 0
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		}
		if code != 2 || !strings.Contains(stderr, "--grace") || strings.Count(stderr, "\n") != 1 {
			t.Errorf("beacon %s: exit %d, stderr %q; want exit 2 and one line naming --grace", strings.Join(args, " "), code, stderr)
		}
	}
}

// holdGroupRunning lists the processes of group pgid that still run (not
// zombies: in a container whose PID 1 does not reap, killed orphans stay
// listed as zombies).
func holdGroupRunning(pgid int) []int {
	ents, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || lockPidGone(pid) {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
		if len(f) > 2 && f[2] == strconv.Itoa(pgid) {
			pids = append(pids, pid)
		}
	}
	return pids
}
