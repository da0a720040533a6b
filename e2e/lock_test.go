package e2e

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/beaconhq/beacon/api/beaconpb"
	"github.com/beaconhq/beacon/client"
	"github.com/beaconhq/beacon/internal/testcluster"
	"github.com/beaconhq/beacon/lock"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
)

const (
	lockCounter = "/locktest/counter"
	lockRecords = "/locktest/w/" // <token>/<n> = "<who>:<lock key>", written with each increment
)

// lockCounterStats is what the clients of the counter test saw.
type lockCounterStats struct {
	mu      sync.Mutex
	acked   []string // record keys of writes answered OK
	refused []string // record keys of writes answered FAILED_PRECONDITION
	kills   int      // kill -9 of `beacon lock` processes holding the lock
}

func (s *lockCounterStats) add(list *[]string, key string) {
	s.mu.Lock()
	*list = append(*list, key)
	s.mu.Unlock()
}

// Processes on three agents increment a counter through the fenced write
// API while holders die: `beacon lock` processes are killed with kill -9,
// Go clients' sessions crash (their connection dropped) or lose their lease
// (revoked in etcd) between reading the counter and writing it, and then
// try the write anyway. The counter must equal the number of applied
// increments, each applied while its grant held, and no refused write may
// have been applied.
func TestLockFencedCounterUnderKills(t *testing.T) {
	c := testcluster.New(t)
	agents := startStatic(t, c, 3)
	cli := agents[0].Client()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	if _, err := cli.Put(ctx, lockCounter, "0"); err != nil {
		t.Fatal(err)
	}
	start, err := cli.Get(ctx, lockCounter) // the history checked starts here
	if err != nil {
		t.Fatal(err)
	}

	stats := &lockCounterStats{}
	runCtx, stopRun := context.WithCancel(ctx)
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for i, a := range agents {
		for j := 0; j < 2; j++ {
			wg.Add(1)
			go func(id int) {
				defer wg.Done()
				if err := lockCounterWorker(runCtx, t, a, cli, id, stats); err != nil {
					errs <- fmt.Errorf("worker %d on %s: %w", id, a.Name, err)
				}
			}(i*2 + j)
		}
	}
	procs := make([]*lockProcSlot, len(agents))
	for i, a := range agents {
		procs[i] = &lockProcSlot{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			lockCounterProcesses(runCtx, t, a, procs[i], stats)
		}()
	}
	// Chaos: now and then kill -9 a `beacon lock` process while it holds
	// the lock (it has written through it and not exited).
	wg.Add(1)
	go func() {
		defer wg.Done()
		for runCtx.Err() == nil {
			select {
			case <-runCtx.Done():
				return
			case <-time.After(time.Duration(20+rand.IntN(40)) * time.Millisecond):
			}
			if rand.IntN(4) == 0 && procs[rand.IntN(len(procs))].killHolder() {
				stats.mu.Lock()
				stats.kills++
				stats.mu.Unlock()
			}
		}
	}()

	// Run until enough of everything happened.
	var runErr error
	deadline := time.Now().Add(60 * time.Second)
	for runErr == nil {
		select {
		case runErr = <-errs:
			continue
		case <-time.After(100 * time.Millisecond):
		}
		resp, err := cli.Get(ctx, lockRecords, clientv3.WithPrefix(), clientv3.WithKeysOnly())
		if err != nil {
			runErr = err
			break
		}
		procWrites := 0
		for _, kv := range resp.Kvs {
			if strings.Contains(strings.TrimPrefix(string(kv.Key), lockRecords), "/p") {
				procWrites++
			}
		}
		stats.mu.Lock()
		done := len(resp.Kvs) >= 60 && procWrites >= 4 && len(stats.refused) >= 4 && stats.kills >= 4
		progress := fmt.Sprintf("%d writes (%d by processes), %d refused, %d kills", len(resp.Kvs), procWrites, len(stats.refused), stats.kills)
		stats.mu.Unlock()
		if done {
			break
		}
		if time.Now().After(deadline) {
			runErr = fmt.Errorf("not enough happened within 60s: %s", progress)
		}
	}
	stopRun()
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	if runErr != nil {
		t.Fatal(runErr)
	}
	lockVerifyCounter(t, cli, start.Header.Revision, stats)
}

// lockCounterWorker is a Go client on one agent: session, acquire, a few
// increments, release; now and then it crashes or loses its lease between
// the read and the write, then tries the write with its stale token.
func lockCounterWorker(ctx context.Context, t *testing.T, a *testcluster.Agent, cli *clientv3.Client, id int, stats *lockCounterStats) error {
	for ctx.Err() == nil {
		c, err := client.New(a.APIAddr)
		if err != nil {
			return err
		}
		err = lockCounterRound(ctx, t, a, c, cli, id, stats)
		c.Close()
		if err != nil && ctx.Err() == nil {
			return err
		}
	}
	return nil
}

func lockCounterRound(ctx context.Context, t *testing.T, a *testcluster.Agent, c *client.Client, cli *clientv3.Client, id int, stats *lockCounterStats) error {
	// A raw session that names no process: when its connection drops, the
	// agent cannot tell a crash from a reset and revokes at once, as it does
	// for a client process that died (TestLockKill9FreesAtOnce kills a real
	// one; a live SDK client's reset is TestReviewConnectionReset…).
	sctx, endSession := context.WithCancel(ctx)
	defer endSession()
	stream, err := c.Sessions.Open(sctx)
	if err != nil {
		return err
	}
	if err := stream.Send(&beaconpb.SessionRequest{Kind: &beaconpb.SessionRequest_Open{Open: &beaconpb.OpenSession{
		Ttl: durationpb.New(time.Minute), Name: fmt.Sprintf("worker-%d", id)}}}); err != nil {
		return err
	}
	opened, err := stream.Recv()
	if err != nil {
		return err
	}
	sess := opened.GetOpened()
	lc := beaconpb.NewLockClient(c.Conn())
	g, err := lc.Acquire(ctx, &beaconpb.LockAcquireRequest{Name: "counter", SessionId: sess.SessionId})
	if err != nil {
		return err
	}
	for i := 0; i < 3; i++ {
		n, err := lockFencedGet(ctx, lc, g)
		if err != nil {
			return err
		}
		recKey := fmt.Sprintf("%s%d/g%d", lockRecords, g.Token, n+1)
		switch rand.IntN(8) {
		case 0: // crash: the connection drops, the agent revokes the session
			c.Conn().Close()
			if err := lockWaitGone(ctx, cli, g.Key); err != nil {
				return err
			}
			return lockStaleWrite(ctx, t, a, g, n, recKey, stats)
		case 1: // the lease ends in etcd (as after a partition) while the session lives
			lease, err := lock.LeaseOf(g.Key)
			if err != nil {
				return err
			}
			if _, err := cli.Revoke(ctx, lease); err != nil {
				return err
			}
			return lockStaleWrite(ctx, t, a, g, n, recKey, stats)
		}
		if err := lockFencedPut(ctx, lc, g, n, recKey); err != nil {
			return fmt.Errorf("fenced write while holding: %w", err)
		}
		stats.add(&stats.acked, recKey)
	}
	_, err = lc.Release(ctx, &beaconpb.LockReleaseRequest{Key: g.Key, Token: g.Token, SessionId: sess.SessionId})
	return err
}

// lockStaleWrite is the holder that wakes up after losing its grant and
// writes anyway, through a new connection: it must be refused.
func lockStaleWrite(ctx context.Context, t *testing.T, a *testcluster.Agent, g *beaconpb.LockAcquireResponse, n int, recKey string, stats *lockCounterStats) error {
	c, err := client.New(a.APIAddr)
	if err != nil {
		return err
	}
	defer c.Close()
	err = lockFencedPut(ctx, beaconpb.NewLockClient(c.Conn()), g, n, recKey)
	if status.Code(err) != codes.FailedPrecondition {
		return fmt.Errorf("a write with a lost grant's token answered %v, want FailedPrecondition", err)
	}
	stats.add(&stats.refused, recKey)
	return nil
}

func lockFencedGet(ctx context.Context, lc beaconpb.LockClient, g *beaconpb.LockAcquireResponse) (int, error) {
	resp, err := lc.Fenced(ctx, &beaconpb.LockFencedRequest{Key: g.Key, Token: g.Token,
		Ops: []*beaconpb.LockFencedOp{{Type: beaconpb.LockOpType_LOCK_OP_GET, Key: lockCounter}}})
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(string(resp.Results[0].Value))
}

func lockFencedPut(ctx context.Context, lc beaconpb.LockClient, g *beaconpb.LockAcquireResponse, n int, recKey string) error {
	_, err := lc.Fenced(ctx, &beaconpb.LockFencedRequest{Key: g.Key, Token: g.Token, Ops: []*beaconpb.LockFencedOp{
		{Type: beaconpb.LockOpType_LOCK_OP_PUT, Key: lockCounter, Value: []byte(strconv.Itoa(n + 1))},
		{Type: beaconpb.LockOpType_LOCK_OP_PUT, Key: recKey, Value: []byte(g.Key)},
	}})
	return err
}

func lockWaitGone(ctx context.Context, cli *clientv3.Client, key string) error {
	return testcluster.Eventually(20*time.Second, func() error {
		resp, err := cli.Get(ctx, key, clientv3.WithCountOnly())
		if err != nil {
			return err
		}
		if resp.Count != 0 {
			return fmt.Errorf("%s still held", key)
		}
		return nil
	})
}

// lockProcSlot is the `beacon lock` process currently running for one agent.
type lockProcSlot struct {
	mu      sync.Mutex
	cmd     *exec.Cmd
	holding bool // it has printed an acknowledged write
}

// killHolder kill -9s the process if it holds the lock.
func (s *lockProcSlot) killHolder() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil || !s.holding {
		return false
	}
	s.holding = false
	return s.cmd.Process.Kill() == nil
}

// lockCounterScript increments the counter four times with `beacon fenced`,
// printing each acknowledged write.
const lockCounterScript = `for i in 1 2 3 4; do
  n=$("$BEACON_BIN" fenced get ` + lockCounter + `) || exit 3
  r=` + lockRecords + `$BEACON_LOCK_TOKEN/p$((n+1))
  "$BEACON_BIN" fenced put ` + lockCounter + ` $((n+1)) $r "$BEACON_LOCK_KEY" && echo "ok $r"
done`

// lockCounterProcesses keeps one `beacon lock counter -- sh -c SCRIPT`
// running on an agent, starting a new one whenever the last ended or was
// killed.
func lockCounterProcesses(ctx context.Context, t *testing.T, a *testcluster.Agent, slot *lockProcSlot, stats *lockCounterStats) {
	bin := testcluster.Binary(t)
	for ctx.Err() == nil {
		cmd := exec.Command(bin, "lock", "counter", "--ttl", "60s", "--agent", a.APIAddr, "--", "sh", "-c", lockCounterScript)
		cmd.Env = append(os.Environ(), "BEACON_BIN="+bin)
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Error(err)
			return
		}
		if err := cmd.Start(); err != nil {
			t.Error(err)
			return
		}
		slot.mu.Lock()
		slot.cmd = cmd
		slot.mu.Unlock()
		stop := context.AfterFunc(ctx, func() { _ = cmd.Process.Kill() })
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if rec, ok := strings.CutPrefix(sc.Text(), "ok "); ok {
				stats.add(&stats.acked, rec)
				slot.mu.Lock()
				slot.holding = true
				slot.mu.Unlock()
			}
		}
		_ = cmd.Wait()
		stop()
		slot.mu.Lock()
		slot.cmd, slot.holding = nil, false
		slot.mu.Unlock()
	}
}

// lockVerifyCounter checks the history: the counter equals the number of
// applied increments, each n was written once, each write applied while
// its grant held (its lock key existed with that token at the write's
// revision), everything acknowledged was applied and nothing refused was.
func lockVerifyCounter(t *testing.T, cli *clientv3.Client, fromRev int64, stats *lockCounterStats) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := cli.Get(ctx, lockCounter)
	if err != nil {
		t.Fatal(err)
	}
	counter, _ := strconv.Atoi(string(resp.Kvs[0].Value))
	recs, err := cli.Get(ctx, lockRecords, clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	applied := map[string]bool{}
	seen := map[int]string{}
	for _, kv := range recs.Kvs {
		key := string(kv.Key)
		applied[key] = true
		parts := strings.Split(strings.TrimPrefix(key, lockRecords), "/")
		token, _ := strconv.ParseInt(parts[0], 10, 64)
		n, _ := strconv.Atoi(parts[1][1:])
		if prev, dup := seen[n]; dup {
			t.Errorf("increment to %d applied twice: %s and %s (a lost update)", n, prev, key)
		}
		seen[n] = key
		lockKey := string(kv.Value)
		at, err := cli.Get(ctx, lockKey, clientv3.WithRev(kv.ModRevision))
		if err != nil {
			t.Fatal(err)
		}
		if len(at.Kvs) == 0 || at.Kvs[0].CreateRevision != token {
			t.Errorf("%s was applied at revision %d when %s did not hold with token %d (a stale write)", key, kv.ModRevision, lockKey, token)
		}
	}
	if counter != len(recs.Kvs) {
		t.Errorf("counter = %d, but %d increments were applied", counter, len(recs.Kvs))
	}
	for n := 1; n <= counter; n++ {
		if seen[n] == "" {
			t.Errorf("no applied increment to %d", n)
		}
	}
	stats.mu.Lock()
	defer stats.mu.Unlock()
	for _, k := range stats.acked {
		if !applied[k] {
			t.Errorf("%s was acknowledged but not applied", k)
		}
	}
	for _, k := range stats.refused {
		if applied[k] {
			t.Errorf("%s was refused as stale but applied", k)
		}
	}
	t.Logf("counter %d: %d increments acknowledged, %d stale writes refused, %d holding processes killed; history since revision %d checked",
		counter, len(stats.acked), len(stats.refused), stats.kills, fromRev)
}

// lockRun runs the beacon CLI with stdin, and returns its output and exit
// code.
func lockRun(t *testing.T, stdin string, env []string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var o, e bytes.Buffer
	cmd := exec.Command(testcluster.Binary(t), args...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = strings.NewReader(stdin), &o, &e
	cmd.Env = append(os.Environ(), env...)
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { done <- cmd.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-time.After(60 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatalf("beacon %v did not finish; stderr: %s", args, e.String())
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return o.String(), e.String(), code
}

// lockProc is a beacon CLI process running in the background, its
// output in a file.
type lockProc struct {
	cmd  *exec.Cmd
	out  string
	done chan struct{}
	err  error
}

// lockStart starts the beacon CLI in the background, its output in
// dir/tag.out.
func lockStart(t *testing.T, dir, tag string, args ...string) *lockProc {
	t.Helper()
	p := &lockProc{cmd: exec.Command(testcluster.Binary(t), args...), out: filepath.Join(dir, tag+".out"), done: make(chan struct{})}
	out, err := os.Create(p.out)
	if err != nil {
		t.Fatal(err)
	}
	p.cmd.Stdout, p.cmd.Stderr = out, out
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.err = p.cmd.Wait()
		out.Close()
		close(p.done)
	}()
	t.Cleanup(func() { _ = p.cmd.Process.Kill(); <-p.done })
	return p
}

// exitCode waits up to d for the process to end and returns its exit code
// (-1 for a signal).
func (p *lockProc) exitCode(t *testing.T, d time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(d):
		b, _ := os.ReadFile(p.out)
		t.Fatalf("beacon %v still runs after %s; output: %s", p.cmd.Args[1:], d, b)
	}
	var ee *exec.ExitError
	if errors.As(p.err, &ee) {
		return ee.ExitCode()
	}
	return 0
}

func (p *lockProc) output() string {
	b, _ := os.ReadFile(p.out)
	return string(b)
}

func lockHolders(t *testing.T, cli *clientv3.Client, name string) int {
	t.Helper()
	resp, err := cli.Get(context.Background(), "/beacon/locks/"+name+"/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		t.Fatal(err)
	}
	return int(resp.Count)
}

func lockWaitHolders(t *testing.T, cli *clientv3.Client, name string, n int) {
	t.Helper()
	err := testcluster.Eventually(30*time.Second, func() error {
		if got := lockHolders(t, cli, name); got != n {
			return fmt.Errorf("%d keys under /beacon/locks/%s/, want %d", got, name, n)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func lockReadFile(t *testing.T, path string) string {
	t.Helper()
	var s string
	err := testcluster.Eventually(20*time.Second, func() error {
		b, err := os.ReadFile(path)
		if err != nil || len(b) == 0 || !bytes.HasSuffix(b, []byte("\n")) {
			return fmt.Errorf("%s not written yet", path)
		}
		s = strings.TrimSpace(string(b))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// lockPidGone: no such process, or only its zombie (reparented to an
// init that may not reap).
func lockPidGone(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	return len(f) > 0 && (f[0] == "Z" || f[0] == "X")
}

func lockOneAgent(t *testing.T) (*testcluster.Agent, *clientv3.Client) {
	c := testcluster.New(t)
	a := c.Host("a")
	a.Start()
	a.WaitReady(readyWithin)
	return a, a.Client()
}

// `etcdctl lock` (concurrency.Mutex) and `beacon lock` on the same name
// never hold it at once: both kinds of process loop over a critical section
// that fails if anyone else is inside.
func TestLockExcludesEtcdctl(t *testing.T) {
	a, cli := lockOneAgent(t)
	dir := t.TempDir()
	section := `mkdir "$D/inside" || { echo "$0" >> "$D/overlap"; exit 3; }; echo "$0" >> "$D/ran"; sleep 0.02; rmdir "$D/inside"`
	env := []string{"D=" + dir}

	// First the deterministic part, from Go: a held concurrency.Mutex makes
	// beacon lock time out, and a beacon holder makes Mutex.TryLock fail.
	s, err := concurrency.NewSession(cli, concurrency.WithTTL(60))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	m := concurrency.NewMutex(s, "/beacon/locks/shared")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := m.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	_, stderr, code := lockRun(t, "", env, "lock", "shared", "--timeout", "300ms", "--agent", a.APIAddr, "--", "sh", "-c", "echo ran > $D/early")
	if code == 0 || !strings.Contains(stderr, "not acquired within 300ms") {
		t.Fatalf("beacon lock while concurrency.Mutex holds: exit %d, %q", code, stderr)
	}
	if _, err := os.Stat(filepath.Join(dir, "early")); err == nil {
		t.Fatal("beacon lock ran its command while concurrency.Mutex held the lock")
	}
	if err := m.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	holder := lockStart(t, dir, "holder", "lock", "shared", "--agent", a.APIAddr, "--",
		"sh", "-c", `echo held > "$0/held"; exec sleep 60`, dir)
	lockReadFile(t, filepath.Join(dir, "held"))
	if err := m.TryLock(ctx); !errors.Is(err, concurrency.ErrLocked) {
		t.Fatalf("concurrency.Mutex.TryLock while beacon lock holds: %v, want ErrLocked", err)
	}
	_ = holder.cmd.Process.Signal(syscall.SIGTERM)
	holder.exitCode(t, 30*time.Second)

	// Then both kinds of process at once.
	etcdctl := testcluster.Etcdctl(t)
	var wg sync.WaitGroup
	var failures atomic.Int32
	loop := func(args ...string) {
		defer wg.Done()
		for i := 0; i < 5; i++ {
			cmd := exec.Command(args[0], args[1:]...)
			cmd.Env = append(os.Environ(), env...)
			if out, err := cmd.CombinedOutput(); err != nil {
				failures.Add(1)
				t.Errorf("%s: %v: %s", args[0], err, out)
			}
		}
	}
	for i := 0; i < 2; i++ {
		wg.Add(2)
		go loop(etcdctl, "--endpoints", a.ClientURL, "lock", "/beacon/locks/shared", "--", "sh", "-c", section, fmt.Sprintf("etcdctl-%d", i))
		go loop(testcluster.Binary(t), "lock", "shared", "--agent", a.APIAddr, "--", "sh", "-c", section, fmt.Sprintf("beacon-%d", i))
	}
	wg.Wait()
	if b, err := os.ReadFile(filepath.Join(dir, "overlap")); err == nil {
		t.Fatalf("two holders were inside at once; entered while held: %s", b)
	}
	ran, _ := os.ReadFile(filepath.Join(dir, "ran"))
	if n := strings.Count(string(ran), "\n"); n != 20 || failures.Load() != 0 {
		t.Fatalf("%d critical sections ran (want 20), %d failures:\n%s", n, failures.Load(), ran)
	}
}

// kill -9 of `beacon lock … -- CMD`: CMD and its children die with it, and
// the next waiter gets the lock at once, long before the 60s TTL could
// have freed it.
func TestLockKill9FreesAtOnce(t *testing.T) {
	a, cli := lockOneAgent(t)
	dir := t.TempDir()
	holder := lockStart(t, dir, "holder", "lock", "k9", "--ttl", "60s", "--agent", a.APIAddr, "--", "sh", "-c",
		`sleep 300 & echo $! > "$0/child.pid"; echo $$ > "$0/sh.pid"; echo "$BEACON_LOCK_TOKEN" > "$0/token"; wait`, dir)
	shPid, _ := strconv.Atoi(lockReadFile(t, filepath.Join(dir, "sh.pid")))
	childPid, _ := strconv.Atoi(lockReadFile(t, filepath.Join(dir, "child.pid")))
	holderToken, _ := strconv.ParseInt(lockReadFile(t, filepath.Join(dir, "token")), 10, 64)

	waiter := lockStart(t, dir, "waiter", "lock", "k9", "--ttl", "60s", "--agent", a.APIAddr, "--", "sh", "-c",
		`echo "$BEACON_LOCK_TOKEN" > "$0/waiter-token"`, dir)
	lockWaitHolders(t, cli, "k9", 2) // the waiter stands in line
	if _, err := os.Stat(filepath.Join(dir, "waiter-token")); err == nil {
		t.Fatal("the waiter ran while the holder held the lock")
	}

	if err := holder.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	holder.exitCode(t, 10*time.Second)
	// Not a timed assertion: with a 60s TTL, only the agent revoking the
	// dead session's lease can free the lock within these 30s.
	if code := waiter.exitCode(t, 30*time.Second); code != 0 {
		t.Fatalf("waiter: exit %d: %s", code, waiter.output())
	}
	waiterToken, _ := strconv.ParseInt(lockReadFile(t, filepath.Join(dir, "waiter-token")), 10, 64)
	if waiterToken <= holderToken {
		t.Errorf("waiter's token %d is not above the killed holder's %d", waiterToken, holderToken)
	}
	err := testcluster.Eventually(20*time.Second, func() error {
		for _, pid := range []int{shPid, childPid} {
			if !lockPidGone(pid) {
				return fmt.Errorf("pid %d (the command or its child) still runs", pid)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// The CLI: bad input names the field, CMD's exit code and signals pass
// through, stdin passes through, the environment carries the grant, a
// timeout is one line, and a lost lock stops CMD.
func TestLockCLI(t *testing.T) {
	a, cli := lockOneAgent(t)
	dir := t.TempDir()
	ag := []string{"--agent", a.APIAddr}

	for _, tc := range []struct {
		args    []string
		code    int
		mention string
	}{
		{[]string{"lock", "", "--", "true"}, 1, "invalid argument: name"},
		{[]string{"lock", "a/b", "--", "true"}, 1, "name"},
		{[]string{"lock", "x", "--ttl", "0s", "--", "true"}, 2, "--ttl"},
		{[]string{"lock", "x", "--ttl", "25h", "--", "true"}, 2, "--ttl"},
		{[]string{"lock", "x", "-n", "0", "--", "true"}, 2, "-n"},
		{[]string{"lock", "x"}, 2, "CMD"},
		{[]string{"fenced", "put", "/k", "v", "--lock-key", "/beacon/locks/x/1", "--token", "0"}, 2, "--token"},
	} {
		_, stderr, code := lockRun(t, "", nil, append(append([]string{}, ag...), tc.args...)...)
		if code != tc.code || !strings.Contains(stderr, tc.mention) || strings.Count(strings.TrimSpace(stderr), "\n") != 0 {
			t.Errorf("beacon %q: exit %d, %q; want exit %d and one line mentioning %q", tc.args, code, stderr, tc.code, tc.mention)
		}
	}

	// gRPC: InvalidArgument naming the field.
	c, err := client.New(a.APIAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	sess, err := c.NewSession(ctx, client.WithName("cli-test"))
	if err != nil {
		t.Fatal(err)
	}
	lc := beaconpb.NewLockClient(c.Conn())
	for _, tc := range []struct {
		req   *beaconpb.LockAcquireRequest
		field string
	}{
		{&beaconpb.LockAcquireRequest{SessionId: sess.ID}, "name"},
		{&beaconpb.LockAcquireRequest{Name: "a/b", SessionId: sess.ID}, "name"},
		{&beaconpb.LockAcquireRequest{Name: "a", SessionId: sess.ID, Limit: -3}, "limit"},
	} {
		_, err := lc.Acquire(ctx, tc.req)
		if st := status.Convert(err); st.Code() != codes.InvalidArgument || !strings.HasPrefix(st.Message(), tc.field) {
			t.Errorf("Acquire %v: %v, want InvalidArgument naming %s", tc.req, err, tc.field)
		}
	}
	held, err := lc.Acquire(ctx, &beaconpb.LockAcquireRequest{Name: "busy", SessionId: sess.ID})
	if err != nil {
		t.Fatal(err)
	}
	_, err = lc.Fenced(ctx, &beaconpb.LockFencedRequest{Key: held.Key, Token: held.Token, Ops: []*beaconpb.LockFencedOp{
		{Type: beaconpb.LockOpType_LOCK_OP_PUT, Key: "/big", Value: make([]byte, 1<<20+1)}}})
	if st := status.Convert(err); st.Code() != codes.InvalidArgument || !strings.Contains(st.Message(), "ops[0].value") {
		t.Errorf("fenced put of 1 MiB + 1: %v, want InvalidArgument naming ops[0].value", err)
	}
	if _, err := c.NewSession(ctx, client.WithTTL(25*time.Hour)); status.Code(err) != codes.InvalidArgument {
		t.Errorf("a session TTL above a day: %v, want InvalidArgument", err)
	}

	// Timeout: one line, non-zero, CMD never ran.
	_, stderr, code := lockRun(t, "", nil, append([]string{"lock", "busy", "--timeout", "300ms"}, append(ag, "--", "touch", filepath.Join(dir, "ran"))...)...)
	if code == 0 || !strings.Contains(stderr, "not acquired within 300ms") || !strings.Contains(stderr, "cli-test") || strings.Count(strings.TrimSpace(stderr), "\n") != 0 {
		t.Errorf("timeout: exit %d, %q", code, stderr)
	}
	if _, err := os.Stat(filepath.Join(dir, "ran")); err == nil {
		t.Error("CMD ran although the lock was never acquired")
	}

	// Exit codes, environment, stdin.
	if _, stderr, code := lockRun(t, "", nil, append([]string{"lock", "x"}, append(ag, "--", "sh", "-c", "exit 7")...)...); code != 7 {
		t.Errorf("CMD exit 7: beacon exit %d (%s)", code, stderr)
	}
	if _, _, code := lockRun(t, "", nil, append([]string{"lock", "x"}, append(ag, "--", "sh", "-c", "kill -TERM $$")...)...); code != 128+15 {
		t.Errorf("CMD killed by SIGTERM: beacon exit %d, want 143", code)
	}
	out, stderr, code := lockRun(t, "hello\n", nil, append([]string{"lock", "x"}, append(ag, "--", "sh", "-c",
		`cat; echo "$BEACON_LOCK_NAME $BEACON_LOCK_KEY $BEACON_LOCK_TOKEN"`)...)...)
	f := strings.Fields(out)
	if code != 0 || len(f) != 4 || f[0] != "hello" || f[1] != "x" || !strings.HasPrefix(f[2], "/beacon/locks/x/") {
		t.Fatalf("stdin and environment: exit %d, stdout %q, stderr %q", code, out, stderr)
	}
	if tok, err := strconv.ParseInt(f[3], 10, 64); err != nil || tok <= 0 {
		t.Errorf("BEACON_LOCK_TOKEN %q", f[3])
	}
	if lockHolders(t, cli, "x") != 0 {
		t.Error("the lock is still held after beacon lock exited")
	}

	// Signals reach CMD; its exit code is beacon's.
	sig := lockStart(t, dir, "sig", append([]string{"lock", "sig"}, append(ag, "--", "sh", "-c",
		`trap 'echo got-term > "$0/term"; exit 5' TERM; echo up > "$0/up"; while :; do sleep 0.05; done`, dir)...)...)
	lockReadFile(t, filepath.Join(dir, "up"))
	_ = sig.cmd.Process.Signal(syscall.SIGTERM)
	if code := sig.exitCode(t, 30*time.Second); code != 5 {
		t.Errorf("SIGTERM to beacon: exit %d, want 5 from CMD's trap; output %q", code, sig.output())
	}
	lockReadFile(t, filepath.Join(dir, "term"))

	// A lost lock: the lease behind beacon's session is revoked in etcd, so
	// the next waiter may hold the lock already; CMD is killed at once
	// (SIGTERM, then SIGKILL without waiting its hour of --grace) and beacon exits
	// non-zero saying so.
	lost := lockStart(t, dir, "lost", append([]string{"lock", "lost", "--ttl", "2h", "--grace", "1h"}, append(ag, "--", "sh", "-c",
		`trap '' TERM; echo $$ > "$0/lostpid"; echo "$BEACON_LOCK_KEY" > "$0/lostkey"; while :; do sleep 0.05; done`, dir)...)...)
	lease, err := lock.LeaseOf(lockReadFile(t, filepath.Join(dir, "lostkey")))
	if err != nil {
		t.Fatal(err)
	}
	lostPid, _ := strconv.Atoi(lockReadFile(t, filepath.Join(dir, "lostpid")))
	if _, err := cli.Revoke(ctx, lease); err != nil {
		t.Fatal(err)
	}
	if code := lost.exitCode(t, 30*time.Second); code != 1 || !strings.Contains(lost.output(), `lock "lost" lost`) {
		t.Errorf("after the lease ended: exit %d, output %q", code, lost.output())
	}
	if !lockPidGone(lostPid) {
		t.Errorf("CMD (pid %d) still runs after beacon lock exited", lostPid)
	}
}
