package faults

import (
	"context"
	"crypto/rand"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/beaconhq/beacon/internal/testcluster"
	"golang.org/x/sys/unix"
)

// The tests in this file check the harness itself with plain sockets
// (no agents): each fault must do exactly what it says, and be undone.

const (
	tcpPort = "9000"
	udpPort = "9001"
)

// serve runs a TCP accept-and-close server and a UDP counter on x.
type server struct {
	x    *Host
	l    net.Listener
	pc   net.PacketConn
	mu   sync.Mutex
	got  map[string]int // UDP payload prefix -> count
	done chan struct{}
}

func serve(t *testing.T, x *Host) *server {
	t.Helper()
	l, err := x.Listen("tcp", x.IP+":"+tcpPort)
	if err != nil {
		t.Fatal(err)
	}
	pc, err := x.ListenPacket("udp", x.IP+":"+udpPort)
	if err != nil {
		t.Fatal(err)
	}
	s := &server{x: x, l: l, pc: pc, got: map[string]int{}, done: make(chan struct{})}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	go func() {
		defer close(s.done)
		buf := make([]byte, 256)
		for {
			n, _, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			key, _, _ := strings.Cut(string(buf[:n]), "/")
			s.mu.Lock()
			s.got[key]++
			s.mu.Unlock()
		}
	}()
	t.Cleanup(func() { l.Close(); pc.Close(); <-s.done })
	return s
}

func (s *server) count(key string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.got[key]
}

// connect times a TCP connect from one host to another.
func connect(from, to *Host, timeout time.Duration) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	start := time.Now()
	c, err := from.DialContext(ctx, "tcp", to.IP+":"+tcpPort)
	if err != nil {
		return 0, err
	}
	c.Close()
	return time.Since(start), nil
}

// udpDelivered sends n datagrams from one host to another's server and
// returns how many arrived (waiting until the count is stable).
func udpDelivered(t *testing.T, from *Host, to *server, n int) int {
	t.Helper()
	var b [4]byte
	_, _ = rand.Read(b[:])
	key := fmt.Sprintf("%x", b)
	c, err := from.DialContext(context.Background(), "udp", to.x.IP+":"+udpPort)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for i := 0; i < n; i++ {
		if _, err := fmt.Fprintf(c, "%s/%d", key, i); err != nil {
			t.Fatal(err)
		}
		if i%50 == 49 {
			time.Sleep(time.Millisecond) // stay under the socket buffers
		}
	}
	// Wait until the count stops moving (delayed packets arrive late).
	last, stable := -1, 0
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline) && stable < 3; {
		time.Sleep(100 * time.Millisecond)
		if c := to.count(key); c == last {
			stable++
		} else {
			last, stable = c, 0
		}
	}
	return to.count(key)
}

func mustInject(t *testing.T, h *Harness, f Fault) *Active {
	t.Helper()
	a, err := h.Inject(t.Context(), f)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func mustHeal(t *testing.T, a *Active) {
	t.Helper()
	if err := a.Heal(t.Context()); err != nil {
		t.Fatal(err)
	}
}

// reach checks TCP between every ordered pair against want ("a>b" keys
// that must connect; every other pair must not).
func reach(t *testing.T, hosts []*Host, want map[string]bool, phase string) {
	t.Helper()
	for _, a := range hosts {
		for _, b := range hosts {
			if a == b {
				continue
			}
			key := a.Name + ">" + b.Name
			_, err := connect(a, b, 300*time.Millisecond)
			// A pair that should connect gets a few more tries: on a loaded
			// machine a first connect over a fresh bridge (ARP included)
			// can take longer than 300 ms. A pair that should not connect
			// is judged on the first: any connect at all is a failure.
			for deadline := time.Now().Add(5 * time.Second); err != nil && want[key] && time.Now().Before(deadline); {
				_, err = connect(a, b, time.Second)
			}
			if got := err == nil; got != want[key] {
				t.Errorf("%s: TCP %s: connected=%v, want %v (%v)", phase, key, got, want[key], err)
			}
		}
	}
}

func allPairs(hosts []*Host) map[string]bool {
	m := map[string]bool{}
	for _, a := range hosts {
		for _, b := range hosts {
			m[a.Name+">"+b.Name] = a != b
		}
	}
	return m
}

// TestNetworkFaults: isolate, partition, one-way cut, delay and loss,
// each checked with real packets between namespaces, then healed.
func TestNetworkFaults(t *testing.T) {
	h := New(t)
	a, b, c := h.AddHost("a"), h.AddHost("b"), h.AddHost("c")
	hosts := []*Host{a, b, c}
	servers := map[*Host]*server{}
	for _, x := range hosts {
		servers[x] = serve(t, x)
	}
	t.Logf("netem available: %v", h.Netem())

	reach(t, hosts, allPairs(hosts), "baseline")

	// Isolate a: nothing in or out, but a still reaches itself.
	f := mustInject(t, h, Isolate(a))
	reach(t, hosts, map[string]bool{"b>c": true, "c>b": true}, "isolate a")
	if _, err := connect(a, a, time.Second); err != nil {
		t.Errorf("isolated host cannot reach its own address: %v", err)
	}
	mustHeal(t, f)
	reach(t, hosts, allPairs(hosts), "after isolate")

	// Partition a | b: c still talks to both.
	f = mustInject(t, h, Partition([]*Host{a}, []*Host{b}))
	reach(t, hosts, map[string]bool{"a>c": true, "c>a": true, "b>c": true, "c>b": true}, "partition a|b")
	mustHeal(t, f)

	// Split a from the rest.
	f = mustInject(t, h, Split(a))
	reach(t, hosts, map[string]bool{"b>c": true, "c>b": true}, "split a")
	mustHeal(t, f)

	// One way: a's packets to b are dropped; b's to a arrive.
	f = mustInject(t, h, CutOneWay(a, b))
	if n := udpDelivered(t, a, servers[b], 50); n != 0 {
		t.Errorf("cut a->b: %d of 50 datagrams a->b arrived, want 0", n)
	}
	if n := udpDelivered(t, b, servers[a], 50); n != 50 {
		t.Errorf("cut a->b: %d of 50 datagrams b->a arrived, want 50", n)
	}
	if n := udpDelivered(t, a, servers[c], 50); n != 50 {
		t.Errorf("cut a->b: %d of 50 datagrams a->c arrived, want 50", n)
	}
	mustHeal(t, f)
	if n := udpDelivered(t, a, servers[b], 50); n != 50 {
		t.Errorf("after cut: %d of 50 datagrams a->b arrived", n)
	}

	// Delay a by 100 ms: a TCP connect to a waits for SYN and SYN-ACK.
	base := medianConnect(t, b, a, 5)
	f = mustInject(t, h, Delay(a, 100*time.Millisecond))
	slow := medianConnect(t, b, a, 5)
	other := medianConnect(t, b, c, 5)
	t.Logf("connect b->a: %s before, %s with %s; b->c %s", base, slow, f, other)
	if slow < 190*time.Millisecond || slow > 800*time.Millisecond {
		t.Errorf("delay 100ms on a: connect b->a took %s, want about 200ms (two delayed packets)", slow)
	}
	if other > 100*time.Millisecond {
		t.Errorf("delay on a slowed b->c: %s", other)
	}
	// Datagrams are delayed, not lost.
	if n := udpDelivered(t, b, servers[a], 100); n != 100 {
		t.Errorf("delay: %d of 100 datagrams arrived", n)
	}
	mustHeal(t, f)
	if d := medianConnect(t, b, a, 5); d > 100*time.Millisecond {
		t.Errorf("after delay: connect b->a still %s", d)
	}

	// Loss 50% on a.
	f = mustInject(t, h, Loss(a, 50))
	n := udpDelivered(t, b, servers[a], 400)
	t.Logf("loss 50%% (%s): %d of 400 datagrams arrived", f, n)
	if n < 120 || n > 280 {
		t.Errorf("loss 50%% on a: %d of 400 arrived, want about 200", n)
	}
	if n := udpDelivered(t, b, servers[c], 200); n != 200 {
		t.Errorf("loss on a touched b->c: %d of 200", n)
	}
	mustHeal(t, f)
	if n := udpDelivered(t, b, servers[a], 200); n != 200 {
		t.Errorf("after loss: %d of 200 arrived", n)
	}

	// Two faults at once, healed in any order, leave no rule behind.
	f1 := mustInject(t, h, Isolate(c))
	f2 := mustInject(t, h, Delay(a, 50*time.Millisecond))
	mustHeal(t, f1)
	mustHeal(t, f2)
	rules, err := h.ForwardRules(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(rules, "bfx-f") {
		t.Errorf("rules left after healing everything:\n%s", rules)
	}
	reach(t, hosts, allPairs(hosts), "after all")

	log := h.FaultLog()
	if len(log) != 8 {
		t.Errorf("fault log has %d entries, want 8", len(log))
	}
	for _, r := range log {
		if r.End.IsZero() || r.End.Before(r.Start) || r.Err != nil {
			t.Errorf("fault log entry %s", r)
		}
	}
	evs, err := h.Events().Read()
	if err != nil {
		t.Fatal(err)
	}
	starts := 0
	for _, e := range evs {
		if e.Kind == "fault-start" {
			starts++
		}
	}
	if starts != 8 {
		t.Errorf("event log has %d fault starts, want 8", starts)
	}
}

func medianConnect(t *testing.T, from, to *Host, n int) time.Duration {
	t.Helper()
	var ds []time.Duration
	for i := 0; i < n; i++ {
		d, err := connect(from, to, 3*time.Second)
		if err != nil {
			t.Fatalf("connect %s->%s: %v", from, to, err)
		}
		ds = append(ds, d)
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	return ds[n/2]
}

// TestProcessFaults: Spawn runs a command inside a host (the pid is the
// command's own), PauseProc stops one process, PauseHost every process of
// the namespace, and Heal resumes them.
func TestProcessFaults(t *testing.T) {
	h := New(t)
	x, y := h.AddHost("x"), h.AddHost("y")
	ctx := t.Context()
	p1, err := x.SpawnCmd(ctx, Cmd{Argv: []string{"sleep", "60"}})
	if err != nil {
		t.Fatal(err)
	}
	p2, err := x.SpawnCmd(ctx, Cmd{Argv: []string{"sh", "-c", "sleep 60 & wait"}})
	if err != nil {
		t.Fatal(err)
	}
	q, err := y.SpawnCmd(ctx, Cmd{Argv: []string{"sleep", "60"}})
	if err != nil {
		t.Fatal(err)
	}
	// The shell's child must exist before the host is paused.
	if err := testcluster.Eventually(5*time.Second, func() error {
		pids, err := netnsPids(ctx, x.NS)
		if err != nil || len(pids) < 3 {
			return fmt.Errorf("pids in %s: %v %v", x.NS, pids, err)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	// The spawned process is `ip netns exec` until it execs CMD: it is in
	// the namespace before it is sleep (this failed once on "ip").
	if err := testcluster.Eventually(5*time.Second, func() error {
		comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", p1.Pid()))
		if strings.TrimSpace(string(comm)) != "sleep" || !pidInNetns(p1.Pid(), x.NS) || pidInNetns(p1.Pid(), y.NS) {
			return fmt.Errorf("pid %d is %q, in %s: %v", p1.Pid(), comm, x.NS, pidInNetns(p1.Pid(), x.NS))
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}

	states := func() string {
		pids, _ := netnsPids(ctx, x.NS)
		var s []string
		for _, pid := range pids {
			s = append(s, string(ProcState(pid)))
		}
		slices.Sort(s)
		return strings.Join(s, "") + "/" + string(ProcState(q.Pid()))
	}

	f := mustInject(t, h, PauseProc(p1))
	if st := ProcState(p1.Pid()); st != 'T' {
		t.Errorf("paused proc state %c", st)
	}
	if st := ProcState(p2.Pid()); st == 'T' {
		t.Errorf("the other proc is stopped too")
	}
	mustHeal(t, f)
	if err := waitStopped(ctx, p1.Pid(), false); err != nil {
		t.Error(err)
	}

	f = mustInject(t, h, PauseHost(x))
	if got := states(); got != "TTT/S" {
		t.Errorf("pause host x: states %s, want every process of x stopped and y's running (TTT/S)", got)
	}
	mustHeal(t, f)
	for _, pid := range []int{p1.Pid(), p2.Pid()} {
		if err := waitStopped(ctx, pid, false); err != nil {
			t.Error(err)
		}
	}
	if got := states(); strings.Contains(got, "T") {
		t.Errorf("after heal: states %s", got)
	}

	// Stop and Wait.
	if err := p1.Stop(5 * time.Second); err == nil {
		t.Errorf("sleep stopped by SIGTERM exited 0")
	}
	if !p1.Exited() || ProcState(p1.Pid()) != 0 {
		t.Errorf("stopped process still there")
	}

	// A one-shot command runs inside the host: it sees only lo and eth0.
	r := x.RunCmd(ctx, Cmd{Argv: []string{"cat", "/proc/net/dev"}})
	if !r.OK() || !strings.Contains(r.Stdout, "eth0") || strings.Count(r.Stdout, ":") != 2 {
		t.Errorf("RunCmd in x: %s", r)
	}
}

// TestCleanupAndSweep: Close removes the namespaces and kills what runs
// inside; Sweep removes only harness namespaces of dead runs.
func TestCleanupAndSweep(t *testing.T) {
	ctx := t.Context()
	inner := &recordTB{TB: t}
	var h *Harness
	var p *Proc
	runGoexit(func() {
		h = New(inner)
		x := h.AddHost("x")
		var err error
		p, err = x.SpawnCmd(ctx, Cmd{Argv: []string{"sleep", "60"}})
		if err != nil {
			inner.Fatal(err)
		}
	})
	if inner.fatal != "" {
		t.Fatal(inner.fatal)
	}
	h.Close()
	names, _ := listNetns(ctx)
	for _, n := range names {
		if strings.HasPrefix(n, h.prefix) {
			t.Errorf("namespace %s left after Close", n)
		}
	}
	if !p.Exited() {
		t.Errorf("process left after Close")
	}

	// A dead run's namespace, with a process inside; a live run's; and
	// one that is not the harness's.
	var b [3]byte
	_, _ = rand.Read(b[:])
	dead := fmt.Sprintf("%sdead%x-1-x", NSPrefix, b)
	liveRun := fmt.Sprintf("live%x", b)
	liveNS := NSPrefix + liveRun + "-1-x"
	other := fmt.Sprintf("bfxother%x", b)
	for _, n := range []string{dead, liveNS, other} {
		if _, err := command(ctx, nil, "ip", "netns", "add", n); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		for _, n := range []string{dead, liveNS, other} {
			_, _ = command(context.Background(), nil, "ip", "netns", "del", n)
		}
	})
	sleeper := exec.Command("ip", "netns", "exec", dead, "sleep", "60")
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- sleeper.Wait() }()
	// Sweep only once the sleeper is inside (ip netns exec has execed).
	if err := testcluster.Eventually(5*time.Second, func() error {
		if !pidInNetns(sleeper.Process.Pid, dead) {
			return fmt.Errorf("sleeper not in %s yet", dead)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	lock, err := os.OpenFile(filepath.Join(runDir(), liveRun+".lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer os.Remove(lock.Name())
	defer lock.Close()
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX); err != nil {
		t.Fatal(err)
	}

	removed, err := Sweep(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(removed, dead) || slices.Contains(removed, liveNS) || slices.Contains(removed, other) {
		t.Errorf("sweep removed %v; want %s only among %s, %s, %s", removed, dead, dead, liveNS, other)
	}
	select {
	case <-exited:
	case <-time.After(5 * time.Second):
		t.Errorf("the process inside the swept namespace is alive")
		_ = sleeper.Process.Kill()
	}
	names, _ = listNetns(ctx)
	if slices.Contains(names, dead) || !slices.Contains(names, liveNS) || !slices.Contains(names, other) {
		t.Errorf("after sweep: %v", names)
	}
	if err := deleteNetns(ctx, other); err == nil {
		t.Errorf("deleteNetns accepted a namespace without the prefix")
	}
}

// TestNoNamespacesFails: when `ip netns add` fails (not root), New fails
// the test with a message that says so; it does not skip.
func TestNoNamespacesFails(t *testing.T) {
	if _, err := startRun(); err != nil {
		t.Fatal(err)
	}
	real, err := exec.LookPath("ip")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	fake := fmt.Sprintf("#!/bin/sh\nif [ \"$1 $2\" = \"netns add\" ]; then echo 'mount --make-shared /run/netns failed: Operation not permitted' >&2; exit 1; fi\nexec %s \"$@\"\n", real)
	if err := os.WriteFile(filepath.Join(dir, "ip"), []byte(fake), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", dir+string(os.PathListSeparator)+os.Getenv("PATH"))
	inner := &recordTB{TB: t}
	runGoexit(func() { New(inner) })
	if inner.fatal == "" || inner.skipped {
		t.Fatalf("New without namespaces: fatal %q, skipped %v", inner.fatal, inner.skipped)
	}
	if !strings.Contains(inner.fatal, "root") || !strings.Contains(inner.fatal, "ip netns add") {
		t.Errorf("message should say what is missing: %q", inner.fatal)
	}
	t.Logf("New fails with: %s", inner.fatal)
}

// recordTB captures Fatal and Skip of code under test.
type recordTB struct {
	testing.TB
	fatal   string
	skipped bool
}

func (r *recordTB) Fatal(args ...any) { r.fatal = fmt.Sprint(args...); runtime.Goexit() }
func (r *recordTB) Fatalf(f string, args ...any) {
	r.fatal = fmt.Sprintf(f, args...)
	runtime.Goexit()
}
func (r *recordTB) Skip(args ...any)           { r.skipped = true; runtime.Goexit() }
func (r *recordTB) Skipf(string, ...any)       { r.skipped = true; runtime.Goexit() }
func (r *recordTB) SkipNow()                   { r.skipped = true; runtime.Goexit() }
func (r *recordTB) Failed() bool               { return r.fatal != "" || r.TB.Failed() }
func (r *recordTB) Errorf(f string, a ...any)  { r.TB.Errorf(f, a...) }
func (r *recordTB) Logf(f string, args ...any) { r.TB.Logf(f, args...) }

// runGoexit calls f in a goroutine (so Fatal can Goexit) and waits.
func runGoexit(f func()) {
	done := make(chan struct{})
	go func() { defer close(done); f() }()
	<-done
}
