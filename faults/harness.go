package faults

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/beaconhq/beacon/internal/testcluster"
)

// Subnet is the private range the hosts' addresses come from. It exists
// only inside the harness's namespaces: the bridge has no address and no
// link to the machine's own namespace, and hosts have no default route.
const Subnet = "10.77.0.0/24"

// Harness is one fleet of hosts on one bridge, for one test.
type Harness struct {
	t      testing.TB
	prefix string // namespace name prefix: bfx-<run>-<n>-
	brNS   string
	dir    string
	bin    string
	netem  bool
	events *Events

	agentArgs []string

	mu       sync.Mutex
	hosts    []*Host
	procs    []*Proc
	procSeq  int
	faultLog []FaultRecord
	active   []*Active
	shapes   map[*Host][]*shapeFault
	tagSeq   int
	queueSeq uint16
	closed   bool
}

// Option configures a harness.
type Option func(*Harness)

// WithBinary runs the given beacon binary instead of building the
// module's (BEACON_FAULTS_BIN does the same for every harness): to run
// the fault tests against another build.
func WithBinary(path string) Option {
	return func(h *Harness) { h.bin = path }
}

// WithAgentArgs adds flags to every agent the harness starts (before the
// flags given to StartAgent), e.g. "--node-ttl", "3s".
func WithAgentArgs(args ...string) Option {
	return func(h *Harness) { h.agentArgs = append(h.agentArgs, args...) }
}

var (
	harnessSeq atomic.Int32
	liveMu     sync.Mutex
	live       = map[*Harness]bool{}
	sigOnce    sync.Once
)

// New builds the harness's bridge namespace. It fails the test — never
// skips — when namespaces cannot be made (not root, no `ip`), or when
// iptables is missing: CI runs as root and installs what it needs.
// Everything it creates is removed by t.Cleanup, on SIGINT/SIGTERM, or
// by the sweep of the next run if this process dies.
func New(t testing.TB, opts ...Option) *Harness {
	t.Helper()
	for _, tool := range []string{"ip", "tc", "iptables", "iptables-restore"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("faults: %s not found: the fault harness needs iproute2 and iptables (apt-get install -y iproute2 iptables; .ci/run installs them)", tool)
		}
	}
	run, err := startRun()
	if err != nil {
		t.Fatalf("faults: starting the run (lock in %s, sweep of old namespaces): %v", runDir(), err)
	}
	h := &Harness{
		t:      t,
		prefix: fmt.Sprintf("%s%s-%d-", NSPrefix, run, harnessSeq.Add(1)),
		dir:    t.TempDir(),
		bin:    os.Getenv("BEACON_FAULTS_BIN"),
		shapes: map[*Host][]*shapeFault{},
	}
	for _, o := range opts {
		o(h)
	}
	if h.bin == "" {
		h.bin = testcluster.Binary(t)
	}
	h.brNS = h.prefix + "br"
	h.events = &Events{Dir: filepath.Join(h.dir, "events")}
	if err := os.MkdirAll(h.events.Dir, 0o755); err != nil {
		t.Fatal(err)
	}
	liveMu.Lock()
	live[h] = true
	liveMu.Unlock()
	sigOnce.Do(catchSignals)
	t.Cleanup(h.Close)

	if err := h.setupBridge(context.Background()); err != nil {
		t.Fatalf("faults: cannot build the test network: %v", err)
	}
	return h
}

func (h *Harness) setupBridge(ctx context.Context) error {
	if _, err := command(ctx, nil, "ip", "netns", "add", h.brNS); err != nil {
		return fmt.Errorf("`ip netns add` failed — the harness needs root (CAP_SYS_ADMIN) and network namespaces: %v", err)
	}
	for _, args := range [][]string{
		{"-n", h.brNS, "link", "set", "lo", "up"},
		{"-n", h.brNS, "link", "add", "br0", "type", "bridge"},
		{"-n", h.brNS, "link", "set", "br0", "up"},
	} {
		if _, err := command(ctx, nil, "ip", args...); err != nil {
			return err
		}
	}
	if err := writeSysctl(h.brPath(), "net.bridge.bridge-nf-call-iptables", "1"); err != nil {
		return fmt.Errorf("bridge netfilter (br_netfilter) is needed for cuts: %v", err)
	}
	if _, err := h.ForwardRules(ctx); err != nil {
		return fmt.Errorf("iptables does not work in a namespace: %v", err)
	}
	// netem where the kernel has it; else the iptables fallback.
	if _, err := command(ctx, nil, "tc", "-n", h.brNS, "qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms"); err == nil {
		h.netem = true
		_, _ = command(ctx, nil, "tc", "-n", h.brNS, "qdisc", "del", "dev", "lo", "root")
	}
	return nil
}

// Netem says whether delay and loss use tc netem (else iptables and an
// NFQUEUE the harness holds packets in: this kernel has no sch_netem).
func (h *Harness) Netem() bool { return h.netem }

// Dir is the harness's directory (hosts' directories, events).
func (h *Harness) Dir() string { return h.dir }

// Events is the shared event log.
func (h *Harness) Events() *Events { return h.events }

// Binary is the beacon binary the hosts run.
func (h *Harness) Binary() string { return h.bin }

func (h *Harness) brPath() string { return filepath.Join(netnsDir, h.brNS) }

func (h *Harness) nextTag() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.tagSeq++
	return fmt.Sprintf("bfx-f%d", h.tagSeq)
}

func (h *Harness) nextQueue() uint16 {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.queueSeq++
	return 100 + h.queueSeq
}

// AddHost creates a host: its namespace, a veth into the bridge, address
// 10.77.0.<n>/24, its directory. No agent runs yet.
func (h *Harness) AddHost(name string) *Host {
	h.t.Helper()
	x, err := h.addHost(context.Background(), name)
	if err != nil {
		h.t.Fatalf("faults: adding host %s: %v", name, err)
	}
	return x
}

func (h *Harness) addHost(ctx context.Context, name string) (*Host, error) {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return nil, errors.New("harness closed")
	}
	for _, x := range h.hosts {
		if x.Name == name {
			h.mu.Unlock()
			return nil, fmt.Errorf("host %s exists", name)
		}
	}
	idx := len(h.hosts) + 1
	if idx > 250 {
		h.mu.Unlock()
		return nil, errors.New("at most 250 hosts")
	}
	ip := fmt.Sprintf("10.77.0.%d", idx)
	x := &Host{
		h: h, Name: name, IP: ip, NS: h.prefix + name, index: idx,
		Dir:       filepath.Join(h.dir, name),
		ClientURL: "http://" + ip + ":2379", PeerURL: "http://" + ip + ":2380",
	}
	x.DataDir = filepath.Join(x.Dir, "data")
	x.dialer = nsDialer{path: filepath.Join(netnsDir, x.NS)}
	h.hosts = append(h.hosts, x)
	h.mu.Unlock()

	if err := os.MkdirAll(x.Dir, 0o755); err != nil {
		return nil, err
	}
	if _, err := command(ctx, nil, "ip", "netns", "add", x.NS); err != nil {
		return nil, err
	}
	for _, args := range [][]string{
		{"link", "add", "eth0", "netns", x.NS, "type", "veth", "peer", "name", x.port(), "netns", h.brNS},
		{"-n", x.NS, "link", "set", "lo", "up"},
		{"-n", x.NS, "addr", "add", ip + "/24", "dev", "eth0"},
		{"-n", x.NS, "link", "set", "eth0", "up"},
		{"-n", h.brNS, "link", "set", x.port(), "master", "br0"},
		{"-n", h.brNS, "link", "set", x.port(), "up"},
	} {
		if _, err := command(ctx, nil, "ip", args...); err != nil {
			return nil, err
		}
	}
	_ = writeSysctl(x.dialer.path, "net.ipv6.conf.all.disable_ipv6", "1") // quiet: no IPv6 chatter
	return x, nil
}

// port is the bridge-side end of the host's veth.
func (x *Host) port() string { return fmt.Sprintf("p%d", x.index) }

// Host returns the host of that name, nil if none.
func (h *Harness) Host(name string) *Host {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, x := range h.hosts {
		if x.Name == name {
			return x
		}
	}
	return nil
}

// Hosts is every host, in the order added.
func (h *Harness) Hosts() []*Host {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]*Host{}, h.hosts...)
}

// InitialCluster is the --initial-cluster value for the given hosts.
func InitialCluster(hosts ...*Host) string {
	var parts []string
	for _, x := range hosts {
		parts = append(parts, x.Name+"="+x.PeerURL)
	}
	return strings.Join(parts, ",")
}

// StartCluster adds voters n1…nV, bootstrapped together with
// --initial-cluster, and proxies p1…pP joined (--role proxy --join)
// through the voters in turn; it waits until every agent is ready and
// fails the test otherwise.
func (h *Harness) StartCluster(ctx context.Context, voters, proxies int) (vs, ps []*Host) {
	h.t.Helper()
	for i := 1; i <= voters; i++ {
		vs = append(vs, h.AddHost(fmt.Sprintf("n%d", i)))
	}
	for i := 1; i <= proxies; i++ {
		ps = append(ps, h.AddHost(fmt.Sprintf("p%d", i)))
	}
	ic := InitialCluster(vs...)
	for _, x := range vs {
		if err := x.StartAgent(ctx, "--initial-cluster", ic); err != nil {
			h.t.Fatal(err)
		}
	}
	h.waitAll(ctx, vs)
	for i, x := range ps {
		if err := x.StartAgent(ctx, "--role", "proxy", "--join", vs[i%len(vs)].ClientURL); err != nil {
			h.t.Fatal(err)
		}
	}
	h.waitAll(ctx, ps)
	return vs, ps
}

func (h *Harness) waitAll(ctx context.Context, hosts []*Host) {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	errs := make([]error, len(hosts))
	var wg sync.WaitGroup
	for i, x := range hosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if errs[i] = x.WaitReady(ctx); errs[i] == nil {
				x.setUp(true)
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		h.t.Fatalf("faults: agents not ready: %v", err)
	}
}

// Close kills every process the harness started and everything still in
// its namespaces, stops its delay queues, and deletes its namespaces (and
// with them the veths and rules). t.Cleanup calls it.
func (h *Harness) Close() {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return
	}
	h.closed = true
	h.mu.Unlock()
	failed := h.t.Failed()
	h.teardown()
	if keep := os.Getenv("BEACON_FAULTS_KEEP"); keep != "" && failed {
		dst := filepath.Join(keep, strings.NewReplacer("/", "_", " ", "_").Replace(h.t.Name())+"-"+time.Now().Format("150405"))
		if err := copyLogs(h.dir, dst); err != nil {
			h.t.Logf("keeping logs: %v", err)
		} else {
			h.t.Logf("logs and events kept in %s", dst)
		}
	}
	if failed {
		for _, x := range h.Hosts() {
			if a := x.Agent(); a != nil {
				h.t.Logf("--- %s agent log (last lines, %s):\n%s", x.Name, x.Dir, tail(a.Stderr(), 25))
			}
		}
		var log []string
		for _, r := range h.FaultLog() {
			log = append(log, r.String())
		}
		if len(log) > 0 {
			h.t.Logf("--- fault log:\n%s", strings.Join(log, "\n"))
		}
	}
}

// teardown is Close without the test's logging, also used on a signal.
func (h *Harness) teardown() {
	h.mu.Lock()
	procs := append([]*Proc{}, h.procs...)
	var delayers []*delayer
	for _, a := range h.active {
		if f, ok := a.f.(*shapeFault); ok && f.delayer != nil {
			delayers = append(delayers, f.delayer)
		}
	}
	hosts := append([]*Host{}, h.hosts...)
	h.mu.Unlock()

	for _, p := range procs {
		_ = p.Signal(syscall.SIGKILL)
	}
	for _, p := range procs {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_ = p.Wait(ctx)
		cancel()
	}
	for _, d := range delayers {
		d.Close()
	}
	ctx := context.Background()
	for _, x := range hosts {
		if err := deleteNetns(ctx, x.NS); err != nil {
			fmt.Fprintf(os.Stderr, "faults: cleanup: %v\n", err)
		}
	}
	if err := deleteNetns(ctx, h.brNS); err != nil {
		fmt.Fprintf(os.Stderr, "faults: cleanup: %v\n", err)
	}
	liveMu.Lock()
	delete(live, h)
	liveMu.Unlock()
}

// catchSignals tears every live harness down on SIGINT or SIGTERM, then
// exits: an interrupted `go test` leaves no namespace or agent behind.
func catchSignals() {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		sig := <-ch
		fmt.Fprintf(os.Stderr, "faults: %v: removing the harness's processes and namespaces\n", sig)
		liveMu.Lock()
		hs := make([]*Harness, 0, len(live))
		for h := range live {
			hs = append(hs, h)
		}
		liveMu.Unlock()
		for _, h := range hs {
			h.mu.Lock()
			h.closed = true
			h.mu.Unlock()
			h.teardown()
			_ = os.RemoveAll(filepath.Dir(h.dir)) // t.TempDir's, which os.Exit skips
		}
		testcluster.Cleanup()
		os.Exit(2)
	}()
}

// copyLogs copies the hosts' logs and the event files (not data dirs).
func copyLogs(src, dst string) error {
	return filepath.WalkDir(src, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		if d.IsDir() {
			if d.Name() == "data" || strings.HasPrefix(d.Name(), "dup") {
				return filepath.SkipDir
			}
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), b, 0o644)
	})
}
