package e2e

import (
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/beaconhq/beacon/internal/testcluster"
)

// reviewActsInChild is a CMD whose work runs in a child of CMD, in CMD's
// process group (a shell pipeline, a worker pool, `make -j`): the child
// ignores SIGTERM and appends the clock to $0 every 20 ms. CMD writes its
// pid (= its process group) to $0.pgid.
const reviewActsInChild = `echo $$ > "$0.pgid"; (trap '' TERM; while :; do date +%s%N >> "$0"; sleep 0.02; done) & wait`

// `beacon lock … -- CMD` is killed with SIGKILL together with its process
// group (`timeout -s KILL`, a shell's `kill -9 %1`, a supervisor that kills
// the job's group). The guard runs in beacon's own process group, so it
// dies in the same instant and never kills CMD's group; PDEATHSIG reaches
// CMD only. CMD's children go on acting, while the agent, seeing the
// session's stream break, revokes the lease at once and the next waiter's
// CMD starts: two holders act at once.
func TestReviewGroupKillLeavesCMDChildren(t *testing.T) {
	a, _ := lockOneAgent(t)
	bin := testcluster.Binary(t)
	dir := t.TempDir()
	oldActs, newActs := filepath.Join(dir, "old.acts"), filepath.Join(dir, "new.acts")

	holder := exec.Command(bin, "lock", "group-kill", "--ttl", "2s", "--agent", a.APIAddr, "--", "sh", "-c", reviewActsInChild, oldActs)
	holder.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // its own job, as a shell would make it
	out, err := os.Create(filepath.Join(dir, "holder.out"))
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	holder.Stdout, holder.Stderr = out, out
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	holderDone := make(chan struct{})
	go func() { _ = holder.Wait(); close(holderDone) }()
	t.Cleanup(func() { _ = syscall.Kill(-holder.Process.Pid, syscall.SIGKILL); <-holderDone })
	holdWaitActs(t, oldActs, 3, 30*time.Second)
	b, err := os.ReadFile(oldActs + ".pgid")
	if err != nil {
		t.Fatal(err)
	}
	cmdGroup, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || cmdGroup <= 1 {
		t.Fatalf("CMD's group %q: %v", b, err)
	}
	// Whatever happens, CMD's group (started by this test) goes at the end.
	t.Cleanup(func() { _ = syscall.Kill(-cmdGroup, syscall.SIGKILL) })

	contender := lockStart(t, dir, "contender", holdArgs("lock", "group-kill", a, newActs)...)
	holdWaitContending(t, a, "lock", "group-kill")

	// kill -9 the holder's job: beacon and its guard, by their group id.
	if err := syscall.Kill(-holder.Process.Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-holderDone
	if err := holdWaitActsErr(t, newActs, 3, 20*time.Second); err != nil {
		t.Fatalf("%v; contender: %s", err, contender.output())
	}
	holdNoOverlap(t, oldActs, newActs)
	if pids := holdGroupRunning(cmdGroup); len(pids) > 0 {
		t.Errorf("CMD's process group %d still runs (%v) after beacon was killed and the lock went to the next holder", cmdGroup, pids)
	}
	_ = contender.cmd.Process.Signal(syscall.SIGKILL)
}

// The worker form waits for a message (--wait) and then runs CMD under the
// reservation. The reservation's deadline is measured from before the
// wait, so a message that arrives after most of --visibility was spent
// waiting is not worked on: beacon refuses to start CMD (less than the
// grace left), nacks the message (a delivery spent) and exits 1.
func TestReviewWorkerMessageAfterAWait(t *testing.T) {
	a, _ := lockOneAgent(t)
	dir := t.TempDir()
	done := filepath.Join(dir, "done")
	worker := lockStart(t, dir, "worker", "queue", "reserve", "late-jobs", "--wait", "60s", "--visibility", "4s",
		"--agent", a.APIAddr, "--", "sh", "-c", `cat > /dev/null; sleep 0.5; touch "$0"`, done)
	time.Sleep(3500 * time.Millisecond) // the worker waits; the job comes late
	if _, stderr, err := a.CLI("queue", "push", "late-jobs", "job"); err != nil {
		t.Fatalf("push: %v: %s", err, stderr)
	}
	code := worker.exitCode(t, 30*time.Second)
	if _, err := os.Stat(done); err != nil || code != 0 {
		t.Fatalf("the worker exited %d without working on the message (done: %v); its output: %s", code, err, worker.output())
	}
}

// reviewRelay forwards TCP connections to an agent's API and can reset
// them all at once, as a NAT, conntrack flush or firewall does to a
// connection between a holder and its agent.
type reviewRelay struct {
	lis   net.Listener
	mu    sync.Mutex
	conns []*net.TCPConn
}

func startReviewRelay(t *testing.T, to string) *reviewRelay {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &reviewRelay{lis: lis}
	t.Cleanup(func() { lis.Close(); r.reset() })
	go func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			u, err := net.Dial("tcp", to)
			if err != nil {
				c.Close()
				continue
			}
			r.mu.Lock()
			r.conns = append(r.conns, c.(*net.TCPConn), u.(*net.TCPConn))
			r.mu.Unlock()
			go func() { _, _ = io.Copy(u, c); u.Close() }()
			go func() { _, _ = io.Copy(c, u); c.Close() }()
		}
	}()
	return r
}

func (r *reviewRelay) addr() string { return r.lis.Addr().String() }

// reset ends every connection with an RST, both ways.
func (r *reviewRelay) reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range r.conns {
		_ = c.SetLinger(0)
		_ = c.Close()
	}
	r.conns = nil
}

// The connection between a holding `beacon lock` and its agent is reset;
// both processes live on. The agent takes the broken stream for a client
// that is gone and revokes the session's lease at once, so the next waiter
// is granted the lock within milliseconds. beacon takes the broken stream
// for an agent that may be gone and keeps its deadline: CMD gets SIGTERM
// and goes on until SIGKILL --grace later. Two CMDs act at once.
func TestReviewConnectionResetRevokesUnderRunningCMD(t *testing.T) {
	a, _ := lockOneAgent(t)
	dir := t.TempDir()
	oldActs, newActs := filepath.Join(dir, "old.acts"), filepath.Join(dir, "new.acts")
	relay := startReviewRelay(t, a.APIAddr)
	holder := lockStart(t, dir, "holder", "lock", "reset", "--ttl", "10s", "--agent", relay.addr(), "--", "sh", "-c", holdActs, oldActs)
	holdWaitActs(t, oldActs, 3, 30*time.Second)
	contender := lockStart(t, dir, "contender", holdArgs("lock", "reset", a, newActs)...)
	holdWaitContending(t, a, "lock", "reset")

	relay.reset()
	if err := holdWaitActsErr(t, newActs, 3, 20*time.Second); err != nil {
		t.Fatalf("%v; contender: %s; holder: %s", err, contender.output(), holder.output())
	}
	holder.exitCode(t, 30*time.Second)
	holdNoOverlap(t, oldActs, newActs)
	_ = contender.cmd.Process.Signal(syscall.SIGKILL)

	// The agent says what it did, naming the lease and the session's
	// name, never the session's id: that is the holder's secret.
	var line string
	for _, l := range strings.Split(a.Log(), "\n") {
		if strings.Contains(l, "connection broke while its process lives on") {
			line = l
		}
	}
	if line == "" || !strings.Contains(line, `"lease"`) || strings.Contains(line, `"session"`) {
		t.Fatalf("want the broken holder's log line with its lease and without its session id, got %q", line)
	}
}

// --ttl is checked against --grace as given, but the session's TTL is
// --ttl truncated to whole seconds (client.WithTTL): --ttl 2.9s --grace
// 2.5s is accepted, the session's lease is 2s, and CMD can never start
// (its deadline is never more than the grace away).
func TestReviewFractionalTTLTruncated(t *testing.T) {
	a, _ := lockOneAgent(t)
	dir := t.TempDir()
	ran := filepath.Join(dir, "ran")
	p := lockStart(t, dir, "holder", "lock", "frac", "--ttl", "2.9s", "--grace", "2.5s", "--agent", a.APIAddr, "--", "touch", ran)
	code := p.exitCode(t, 30*time.Second)
	if _, err := os.Stat(ran); err != nil || code != 0 {
		t.Fatalf("beacon lock --ttl 2.9s --grace 2.5s exited %d without running CMD: %s", code, p.output())
	}
}
