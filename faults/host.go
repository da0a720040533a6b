package faults

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/beaconhq/beacon/internal/testcluster"
	"github.com/miekg/dns"
)

// Host is one machine of the fleet: a network namespace with one veth into
// the harness's bridge, an address, a directory, and at most one agent.
// Inside the namespace the agent keeps its API, HTTP and DNS on the
// defaults (127.0.0.1:7600, :7601, :8600), like on a real host, so
// `beacon …` run in the host needs no --agent; its client and peer URLs
// are on the host's address.
type Host struct {
	h       *Harness
	Name    string // node name (--name)
	IP      string // 10.77.0.x, reachable from the other hosts only
	NS      string // network namespace name
	Dir     string // the host's directory: logs and its data dir
	DataDir string // --data-dir
	index   int    // 1-based; the bridge port is "p<index>"

	ClientURL string // http://IP:2379
	PeerURL   string // http://IP:2380

	dialer nsDialer

	mu        sync.Mutex
	agent     *Proc
	agentArgs []string // the full argv of the last agent start, for restarts
	up        bool     // agent running, not stopped, answered /health
	gen       uint64   // bumped on every change of up
}

// The agent's listeners inside the host namespace.
const (
	APIAddr  = "127.0.0.1:7600"
	HTTPAddr = "127.0.0.1:7601"
	DNSAddr  = "127.0.0.1:8600"
)

func (x *Host) String() string { return x.Name }

func (x *Host) env() []string {
	path := filepath.Dir(x.h.bin) + string(os.PathListSeparator) + os.Getenv("PATH")
	return append(os.Environ(),
		"PATH="+path,
		"BFX_HOST="+x.Name,
		"BFX_EVENTS="+x.h.events.Dir,
	)
}

// Run runs `beacon args…` inside the host and waits for it (bounded by ctx
// and by 60 s).
func (x *Host) Run(ctx context.Context, args ...string) Result {
	return x.RunCmd(ctx, Cmd{Argv: append([]string{"beacon"}, args...)})
}

// RunCmd runs any command inside the host and waits for it.
func (x *Host) RunCmd(ctx context.Context, c Cmd) Result {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	argv := append([]string{}, c.Argv...)
	if len(argv) > 0 && argv[0] == "beacon" {
		argv[0] = x.h.bin
	}
	res := Result{Argv: c.Argv, Code: -1, Start: time.Now()}
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", x.NS}, argv...)...)
	cmd.Dir = x.Dir
	cmd.Env = append(x.env(), c.Env...)
	cmd.Stdin = c.Stdin
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	if res.Err = startOnSpawner(cmd); res.Err == nil {
		res.Err = cmd.Wait()
	}
	res.End = time.Now()
	res.Stdout, res.Stderr = o.String(), e.String()
	if cmd.ProcessState != nil {
		res.Code = cmd.ProcessState.ExitCode()
	}
	return res
}

// Spawn starts a long-running `beacon args…` inside the host. It is
// killed when ctx ends, and at the latest when the harness closes.
func (x *Host) Spawn(ctx context.Context, args ...string) (*Proc, error) {
	return x.SpawnCmd(ctx, Cmd{Argv: append([]string{"beacon"}, args...)})
}

// SpawnCmd starts any long-running command inside the host.
func (x *Host) SpawnCmd(ctx context.Context, c Cmd) (*Proc, error) {
	return x.spawn(ctx, c)
}

// DialContext connects from inside the host's namespace.
func (x *Host) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	return x.dialer.DialContext(ctx, network, addr)
}

// Listen listens inside the host's namespace.
func (x *Host) Listen(network, addr string) (net.Listener, error) {
	return x.dialer.Listen(network, addr)
}

// ListenPacket opens a packet socket inside the host's namespace.
func (x *Host) ListenPacket(network, addr string) (net.PacketConn, error) {
	return x.dialer.ListenPacket(network, addr)
}

// HTTPClient is a client whose connections start inside the host.
func (x *Host) HTTPClient() *http.Client {
	return &http.Client{
		Transport: &http.Transport{DialContext: x.DialContext, DisableKeepAlives: true},
		Timeout:   5 * time.Second,
	}
}

// StartAgent starts `beacon agent` on the host with its place in the
// fleet (name, data dir, URLs), the harness's agent args, then extra.
func (x *Host) StartAgent(ctx context.Context, extra ...string) error {
	args := []string{"agent", "--name", x.Name, "--data-dir", x.DataDir,
		"--client-url", x.ClientURL, "--peer-url", x.PeerURL}
	args = append(args, x.h.agentArgs...)
	args = append(args, extra...)
	return x.startAgent(args)
}

// StartAgentWith starts `beacon agent args…` with exactly these args
// (no name, data dir or URLs added): for agents that pose as another
// node, or use another data dir.
func (x *Host) StartAgentWith(ctx context.Context, args ...string) error {
	return x.startAgent(append([]string{"agent"}, args...))
}

func (x *Host) startAgent(args []string) error {
	x.mu.Lock()
	if x.agent != nil && !x.agent.Exited() {
		x.mu.Unlock()
		return fmt.Errorf("%s: an agent is already running (pid %d)", x.Name, x.agent.Pid())
	}
	x.mu.Unlock()
	p, err := x.spawn(nil, Cmd{Argv: append([]string{"beacon"}, args...), Label: "agent"})
	if err != nil {
		return err
	}
	x.mu.Lock()
	x.agent, x.agentArgs = p, args
	x.mu.Unlock()
	x.h.events.Record("harness", "agent-start", fmt.Sprintf("%s pid=%d", x.Name, p.Pid()))
	return nil
}

// RestartAgent starts the agent again with the args of its last start (so
// on the same data dir); the previous one must have exited.
func (x *Host) RestartAgent(ctx context.Context) error {
	x.mu.Lock()
	args := x.agentArgs
	x.mu.Unlock()
	if args == nil {
		return fmt.Errorf("%s: no agent was started before", x.Name)
	}
	return x.startAgent(args)
}

// Agent is the host's current (or last) agent process, nil if none.
func (x *Host) Agent() *Proc {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.agent
}

// AgentLog is the agent's stderr so far (its log).
func (x *Host) AgentLog() string {
	if a := x.Agent(); a != nil {
		return a.Stderr()
	}
	return ""
}

// WaitReady polls /ready until it answers 200 (the agent reaches a
// quorum), failing early if the agent exits.
func (x *Host) WaitReady(ctx context.Context) error {
	if err := x.waitHTTP(ctx, "/ready"); err != nil {
		return err
	}
	x.setUp(true)
	return nil
}

// WaitUp polls /health until it answers 200 (the agent has started and
// serves, with or without a quorum) and then counts the agent as up.
func (x *Host) WaitUp(ctx context.Context) error {
	if err := x.waitHTTP(ctx, "/health"); err != nil {
		return err
	}
	x.setUp(true)
	return nil
}

func (x *Host) waitHTTP(ctx context.Context, path string) error {
	a := x.Agent()
	if a == nil {
		return fmt.Errorf("%s: no agent", x.Name)
	}
	cl := x.HTTPClient()
	cl.Timeout = 2 * time.Second
	last := errors.New("not asked yet")
	for wait := 20 * time.Millisecond; ; wait = min(wait*2, 250*time.Millisecond) {
		if a.Exited() {
			return fmt.Errorf("%s: agent exited (%v) before %s answered 200; log:\n%s", x.Name, a.Wait(ctx), path, tail(a.Stderr(), 30))
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+HTTPAddr+path, nil)
		resp, err := cl.Do(req)
		if err == nil {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("%s: %s %s", path, resp.Status, strings.TrimSpace(string(body)))
		}
		last = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %s not 200: %v (last: %v); log:\n%s", x.Name, path, ctx.Err(), last, tail(a.Stderr(), 30))
		case <-a.Done():
		case <-time.After(wait):
		}
	}
}

// setUp records whether the agent is expected to answer (DNS, API).
func (x *Host) setUp(up bool) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.up != up {
		x.up = up
		x.gen++
	}
}

// UpState says whether the agent is expected to answer now, and a
// generation that changes whenever that changes: a query that failed
// while up, with the same generation before and after, failed on a
// running, unpaused agent.
func (x *Host) UpState() (up bool, gen uint64) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.agent == nil || x.agent.Exited() {
		return false, x.gen
	}
	return x.up, x.gen
}

// Members runs `beacon members -w json` in the host.
func (x *Host) Members(ctx context.Context) ([]testcluster.Member, error) {
	r := x.Run(ctx, "members", "-w", "json", "--call-timeout", "5s")
	if !r.OK() {
		return nil, fmt.Errorf("%s: beacon members: %s", x.Name, r.Line())
	}
	var resp struct {
		Members []testcluster.Member `json:"members"`
	}
	if err := json.Unmarshal([]byte(r.Stdout), &resp); err != nil {
		return nil, fmt.Errorf("%s: beacon members -w json: %v: %q", x.Name, err, r.Stdout)
	}
	return resp.Members, nil
}

// Query asks the host's agent a DNS question over TCP (no truncation)
// from inside the namespace.
func (x *Host) Query(ctx context.Context, name string, qtype uint16) (*dns.Msg, error) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	conn, err := x.DialContext(ctx, "tcp", DNSAddr)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	c := &dns.Client{Net: "tcp"}
	r, _, err := c.ExchangeWithConnContext(ctx, m, &dns.Conn{Conn: conn})
	return r, err
}

// ServiceInstances asks the host's agent for <service>.service.beacon SRV
// and returns the instance ids of the targets (<id>.<service>.service.beacon.).
// NXDOMAIN is an empty answer; other error codes are errors.
func (x *Host) ServiceInstances(ctx context.Context, service string) (map[string]bool, error) {
	r, err := x.Query(ctx, service+".service.beacon.", dns.TypeSRV)
	if err != nil {
		return nil, err
	}
	got := map[string]bool{}
	switch r.Rcode {
	case dns.RcodeSuccess, dns.RcodeNameError:
	default:
		return nil, fmt.Errorf("%s.service.beacon SRV: %s", service, dns.RcodeToString[r.Rcode])
	}
	for _, rr := range r.Answer {
		if srv, ok := rr.(*dns.SRV); ok {
			id, _, _ := strings.Cut(srv.Target, ".")
			got[id] = true
		}
	}
	return got, nil
}

// NodeAddr asks the host's agent for <node>.node.beacon A; "" when it
// answers without an address (NXDOMAIN).
func (x *Host) NodeAddr(ctx context.Context, node string) (string, error) {
	r, err := x.Query(ctx, node+".node.beacon.", dns.TypeA)
	if err != nil {
		return "", err
	}
	if r.Rcode != dns.RcodeSuccess && r.Rcode != dns.RcodeNameError {
		return "", fmt.Errorf("%s.node.beacon A: %s", node, dns.RcodeToString[r.Rcode])
	}
	for _, rr := range r.Answer {
		if a, ok := rr.(*dns.A); ok {
			return a.A.String(), nil
		}
	}
	return "", nil
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
