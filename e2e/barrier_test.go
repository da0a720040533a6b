package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/beaconhq/beacon/internal/testcluster"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// barrierStartCmd is a participant's CMD: it writes when it started
// (ns since the epoch) to $DIR/start.$ID.
const barrierStartCmd = `date +%s%N > "$DIR/start.$ID"`

// barrierParticipant starts `beacon barrier NAME ARGS -- sh -c CMD` on
// agent a, with DIR and ID in its environment.
func barrierParticipant(t *testing.T, a *testcluster.Agent, dir, id, name, cmd string, args ...string) *electProc {
	t.Helper()
	argv := append([]string{"barrier", name, "--agent", a.APIAddr}, args...)
	argv = append(argv, "--", "sh", "-c", cmd)
	return startElectProc(t, testcluster.Binary(t), []string{"DIR=" + dir, "ID=" + id}, argv...)
}

// barrierWaiting waits until the barrier's rounds hold n participants.
func barrierWaiting(t *testing.T, cli *clientv3.Client, name string, n int64) {
	t.Helper()
	err := testcluster.Eventually(30*time.Second, func() error {
		resp, err := cli.Get(context.Background(), "/beacon/barriers/"+name+"/rounds/", clientv3.WithPrefix(), clientv3.WithCountOnly())
		if err != nil {
			return err
		}
		if resp.Count != n {
			return fmt.Errorf("%d participants in barrier %s, want %d", resp.Count, name, n)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// barrierStarts reads the start times the CMDs wrote, by id.
func barrierStarts(t *testing.T, dir string) map[string]int64 {
	t.Helper()
	out := map[string]int64{}
	files, _ := filepath.Glob(filepath.Join(dir, "start.*"))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		ns, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
		if err != nil {
			t.Fatalf("%s: %q is no time", f, b)
		}
		out[strings.TrimPrefix(filepath.Base(f), "start.")] = ns
	}
	return out
}

// barrierExit waits for a participant and checks its exit code.
func barrierExit(t *testing.T, p *electProc, code int) {
	t.Helper()
	p.wait(t)
	if got := p.cmd.ProcessState.ExitCode(); got != code {
		t.Fatalf("%v exited %d, want %d; output:\n%s", p.cmd.Args, got, code, p.output())
	}
}

// TestBarrierFiveParticipantsOnThreeAgents: five `beacon barrier` CLIs
// on three agents; the four first wait, none runs CMD; the fifth's
// arrival starts CMD on all five, none before it.
func TestBarrierFiveParticipantsOnThreeAgents(t *testing.T) {
	agents := startStatic(t, testcluster.New(t), 3)
	cli := agents[0].Client()
	dir := t.TempDir()
	var ps []*electProc
	for i := range 4 {
		ps = append(ps, barrierParticipant(t, agents[i%3], dir, strconv.Itoa(i), "five", barrierStartCmd, "--count", "5"))
	}
	barrierWaiting(t, cli, "five", 4)
	if starts := barrierStarts(t, dir); len(starts) > 0 {
		t.Fatalf("CMD started with four of five in: %v", starts)
	}
	fifth := time.Now().UnixNano()
	ps = append(ps, barrierParticipant(t, agents[1], dir, "4", "five", barrierStartCmd, "--count", "5"))
	for _, p := range ps {
		barrierExit(t, p, 0)
	}
	starts := barrierStarts(t, dir)
	if len(starts) != 5 {
		t.Fatalf("%d CMDs started, want 5: %v", len(starts), starts)
	}
	var last int64
	for id, ns := range starts {
		if ns < fifth {
			t.Errorf("participant %s started CMD %s before the fifth entered", id, time.Duration(fifth-ns))
		}
		last = max(last, ns)
	}
	t.Logf("CMD started on all five %s after the fifth was launched (a process start included)", time.Duration(last-fifth))
	// All left: the last one out removed what the barrier kept.
	barrierWaitingPrefix(t, cli, "/beacon/barriers/five/", 0)
}

func barrierWaitingPrefix(t *testing.T, cli *clientv3.Client, prefix string, n int64) {
	t.Helper()
	err := testcluster.Eventually(30*time.Second, func() error {
		resp, err := cli.Get(context.Background(), prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
		if err != nil {
			return err
		}
		if resp.Count != n {
			return fmt.Errorf("%d keys under %s, want %d", resp.Count, prefix, n)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestBarrierDropsAKilledParticipant: a participant whose beacon CLI is
// killed with kill -9 while waiting is removed at once by its session;
// the others trip when a replacement arrives, and the killed one never
// runs CMD.
func TestBarrierDropsAKilledParticipant(t *testing.T) {
	agents := startStatic(t, testcluster.New(t), 3)
	cli := agents[0].Client()
	dir := t.TempDir()
	var ps []*electProc
	for i := range 4 {
		ps = append(ps, barrierParticipant(t, agents[i%3], dir, strconv.Itoa(i), "kill", barrierStartCmd, "--count", "5"))
	}
	barrierWaiting(t, cli, "kill", 4)
	ps[2].signal(syscall.SIGKILL)
	ps[2].wait(t)
	barrierWaiting(t, cli, "kill", 3) // dropped by its session, not after a TTL
	if starts := barrierStarts(t, dir); len(starts) > 0 {
		t.Fatalf("CMD started with three of five in: %v", starts)
	}
	ps = append(ps, barrierParticipant(t, agents[2], dir, "replacement", "kill", barrierStartCmd, "--count", "5"))
	barrierWaiting(t, cli, "kill", 4)
	ps = append(ps, barrierParticipant(t, agents[0], dir, "fifth", "kill", barrierStartCmd, "--count", "5"))
	for i, p := range ps {
		if i != 2 {
			barrierExit(t, p, 0)
		}
	}
	starts := barrierStarts(t, dir)
	if _, ran := starts["2"]; ran || len(starts) != 5 {
		t.Fatalf("CMDs started: %v; want the five living participants, not 2", starts)
	}
}

// TestBarrierTimeoutNamesTheMissing: with three of five in, --timeout
// ends each wait with exit 1 and one line saying how many are missing
// and who is present (node and pid).
func TestBarrierTimeoutNamesTheMissing(t *testing.T) {
	agents := startStatic(t, testcluster.New(t), 3)
	cli := agents[0].Client()
	dir := t.TempDir()
	var ps []*electProc
	for i, timeout := range []string{"10s", "25s", "25s"} {
		ps = append(ps, barrierParticipant(t, agents[i], dir, strconv.Itoa(i), "short", barrierStartCmd, "--count", "5", "--timeout", timeout))
		barrierWaiting(t, cli, "short", int64(i+1)) // in this order of arrival
	}
	barrierExit(t, ps[0], 1)
	want := fmt.Sprintf(`beacon: deadline exceeded: barrier "short": timed out after 10s waiting for 2 of 5; present: n1 (pid %d), n2 (pid %d), n3 (pid %d)`,
		ps[0].cmd.Process.Pid, ps[1].cmd.Process.Pid, ps[2].cmd.Process.Pid)
	if got := ps[0].output(); got != want+"\n" {
		t.Fatalf("the first to time out printed\n%q\nwant\n%q", got, want)
	}
	barrierWaiting(t, cli, "short", 2) // it withdrew
	line := regexp.MustCompile(`^beacon: deadline exceeded: barrier "short": timed out after 25s waiting for [34] of 5; present: (n[23] \(pid \d+\)(, )?)+\n$`)
	for _, p := range ps[1:] {
		barrierExit(t, p, 1)
		if !line.MatchString(p.output()) {
			t.Fatalf("printed %q, want one line naming the missing", p.output())
		}
	}
	if starts := barrierStarts(t, dir); len(starts) > 0 {
		t.Fatalf("CMD started without the barrier tripping: %v", starts)
	}
}

// TestBarrierWaitLeaveWaitsForTheSlowest: with --wait-leave, the
// participants whose CMD ends at once are still running (waiting) when
// the slowest CMD ends, and all exit 0 after it.
func TestBarrierWaitLeaveWaitsForTheSlowest(t *testing.T) {
	agents := startStatic(t, testcluster.New(t), 3)
	dir := t.TempDir()
	// The slowest CMD, once done, notes which participants' beacon
	// processes still run (not zombies), from the pids the test wrote.
	slow := `sleep 1.5
while [ ! -s "$DIR/pids" ]; do sleep 0.05; done
for p in $(cat "$DIR/pids"); do
  if [ -e /proc/$p ] && ! grep -q '^[0-9]* ([^)]*) Z' /proc/$p/stat; then echo $p >> "$DIR/alive"; fi
done`
	var ps []*electProc
	for i, cmd := range []string{barrierStartCmd, barrierStartCmd + "; sleep 0.3", barrierStartCmd + "; " + slow} {
		ps = append(ps, barrierParticipant(t, agents[i], dir, strconv.Itoa(i), "leave", cmd, "--count", "3", "--wait-leave"))
	}
	pids := fmt.Sprintf("%d %d\n", ps[0].cmd.Process.Pid, ps[1].cmd.Process.Pid)
	if err := os.WriteFile(filepath.Join(dir, "pids.tmp"), []byte(pids), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(dir, "pids.tmp"), filepath.Join(dir, "pids")); err != nil {
		t.Fatal(err)
	}
	for _, p := range ps {
		barrierExit(t, p, 0)
	}
	alive, _ := os.ReadFile(filepath.Join(dir, "alive"))
	if got := strings.Fields(string(alive)); len(got) != 2 {
		t.Fatalf("when the slowest CMD ended, %v of the fast participants (%s) still waited; want both", got, strings.TrimSpace(pids))
	}
}

// TestBarrierCLIRefusals: a wrong command line exits 2 with one line; a
// participant whose count differs from those waiting exits 1 with one
// line naming both counts, and CMD exits with its own code once the
// barrier trips.
func TestBarrierCLIRefusals(t *testing.T) {
	a, cli := lockOneAgent(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"barrier", "x", "--", "true"}, "give --count N"},
		{[]string{"barrier", "x", "--count", "0", "--", "true"}, "--count 0"},
		{[]string{"barrier", "x", "--count", "2"}, "then -- and the command"},
		{[]string{"barrier", "a b", "--count", "2", "--", "true"}, "spaces"},
		{[]string{"barrier", "x", "--count", "2", "--timeout", "-1s", "--", "true"}, "--timeout -1s"},
	} {
		_, stderr, code := queueCLI(t, a, nil, tc.args...)
		if line := dialectErr(t, fmt.Sprint(tc.args), stderr, code, 2); !strings.Contains(line, tc.want) {
			t.Errorf("%v: %q does not say %q", tc.args, line, tc.want)
		}
	}
	dir := t.TempDir()
	waiting := barrierParticipant(t, a, dir, "0", "counts", "exit 7", "--count", "2")
	barrierWaiting(t, cli, "counts", 1)
	_, stderr, code := queueCLI(t, a, nil, "barrier", "counts", "--count", "3", "--", "true")
	line := dialectErr(t, "a count of 3 among 2s", stderr, code, 1)
	want := fmt.Sprintf(`beacon: failed precondition: barrier "counts": count 3 does not match count 2 of the participants already waiting in round 1 (a (pid %d))`, waiting.cmd.Process.Pid)
	if line != want {
		t.Fatalf("got %q, want %q", line, want)
	}
	_, stderr, code = queueCLI(t, a, nil, "barrier", "counts", "--count", "2", "--", "sh", "-c", "exit 5")
	if code != 5 {
		t.Fatalf("the second participant exited %d (%s), want CMD's 5", code, stderr)
	}
	barrierExit(t, waiting, 7)
}

// TestBarrierInterruptedWhileWaiting: SIGTERM while waiting to enter
// ends beacon barrier with 128+15 and one line, and takes its
// participant out at once.
func TestBarrierInterruptedWhileWaiting(t *testing.T) {
	a, cli := lockOneAgent(t)
	p := barrierParticipant(t, a, t.TempDir(), "0", "sig", barrierStartCmd, "--count", "2")
	barrierWaiting(t, cli, "sig", 1)
	p.signal(syscall.SIGTERM)
	barrierExit(t, p, 128+15)
	if out := p.output(); out != "beacon: barrier \"sig\": interrupted (terminated) while entering\n" {
		t.Fatalf("printed %q", out)
	}
	barrierWaitingPrefix(t, cli, "/beacon/barriers/sig/", 0)
}
