package bench

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/beaconhq/beacon/api/beaconpb"
	"github.com/beaconhq/beacon/client"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	"google.golang.org/protobuf/types/known/durationpb"
)

// ElectionOptions tune `beacon bench election`. With no Agent it starts its
// own pair: leaders on the member A, waiters on the proxy B.
type ElectionOptions struct {
	Agent     string // leaders' agent API address
	AgentB    string // waiters' agent API address (default Agent)
	Endpoint  string // Agent's etcd client URL: the plain leaders' endpoint, and what killed agents join
	EndpointB string // the plain waiters' endpoint (default Endpoint)

	Samples      int           // leader processes killed, beacon side
	PlainSamples int           // leader processes killed, plain side (each waits out TTL)
	AgentSamples int           // agents (beacon) or leader processes (plain) killed with AgentTTL
	TTL          time.Duration // session TTL when the leader process dies
	AgentTTL     time.Duration // session TTL when the leader's agent dies
}

// Election measures failover: from kill -9 of the leader to the moment the
// next candidate's Campaign returns, on another agent. Beside it in the
// same run, the plain way: etcd's concurrency.Election, whose lease is
// kept alive by the leader process itself, so a dead leader is noticed
// only when its TTL runs out.
func Election(ctx context.Context, w io.Writer, o ElectionOptions) error {
	dir, err := os.MkdirTemp("", "beacon-bench-election-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if o.Agent == "" {
		a, b, stopAll, err := startPair(ctx, dir)
		if err != nil {
			return err
		}
		defer stopAll()
		o.Agent, o.AgentB, o.Endpoint, o.EndpointB = a.API, b.API, a.ClientURL, b.ClientURL
	}
	if o.AgentB == "" {
		o.AgentB = o.Agent
	}
	if o.EndpointB == "" {
		o.EndpointB = o.Endpoint
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	b := &electBench{o: o, self: self, dir: dir, run: time.Now().UnixNano() % 100000}
	if b.cli, err = electEtcd(o.Endpoint); err != nil {
		return err
	}
	defer b.cli.Close()
	if b.cliB, err = electEtcd(o.EndpointB); err != nil {
		return err
	}
	defer b.cliB.Close()
	if b.waiters, err = client.New(o.AgentB); err != nil {
		return err
	}
	defer b.waiters.Close()

	var procBeacon, procPlain, agentBeacon, agentPlain []time.Duration
	steps := []struct {
		what string
		n    int
		out  *[]time.Duration
		f    func(context.Context, int) (time.Duration, error)
	}{
		{"beacon, leader process killed", o.Samples, &procBeacon, b.beaconProcess},
		{"plain, leader process killed", o.PlainSamples, &procPlain, func(ctx context.Context, i int) (time.Duration, error) {
			return b.plainProcess(ctx, i, o.TTL)
		}},
		{"beacon, leader's agent killed", o.AgentSamples, &agentBeacon, b.beaconAgent},
		{"plain, leader killed with the short TTL", o.AgentSamples, &agentPlain, func(ctx context.Context, i int) (time.Duration, error) {
			return b.plainProcess(ctx, 1000+i, o.AgentTTL)
		}},
	}
	for _, s := range steps {
		for i := 0; i < s.n; i++ {
			d, err := s.f(ctx, i)
			if err != nil {
				return fmt.Errorf("%s: %w", s.what, err)
			}
			*s.out = append(*s.out, d)
		}
	}

	fmt.Fprintf(w, "beacon bench election: failover from kill -9 of the leader to the next candidate's Campaign returning\n")
	fmt.Fprintf(w, "(leaders on %s, waiters on %s; %d/%d process kills, %d agent kills)\n\n", o.Agent, o.AgentB, o.Samples, o.PlainSamples, o.AgentSamples)
	fmt.Fprintf(w, "%-44s %10s %10s %10s\n", "", "beacon", "plain", "ratio")
	row := func(what string, bs, ps []time.Duration, pick func([]time.Duration) time.Duration, target string) {
		bv, pv := pick(bs), pick(ps)
		fmt.Fprintf(w, "%-44s %10s %10s %9.4fx  %s\n", what, electRound(bv), electRound(pv), float64(bv)/float64(pv), target)
	}
	p50 := func(d []time.Duration) time.Duration { p, _ := percentiles(d); return p }
	row(fmt.Sprintf("leader process killed, p50 (TTL %s)", o.TTL), procBeacon, procPlain, p50, "")
	row(fmt.Sprintf("leader process killed, max (TTL %s)", o.TTL), procBeacon, procPlain, electMax,
		verdict(electMax(procBeacon) <= 200*time.Millisecond, "target ≤ 200ms:"))
	row(fmt.Sprintf("leader's agent killed, p50 (TTL %s)", o.AgentTTL), agentBeacon, agentPlain, p50, "")
	row(fmt.Sprintf("leader's agent killed, max (TTL %s)", o.AgentTTL), agentBeacon, agentPlain, electMax,
		verdict(electMax(agentBeacon) <= o.AgentTTL+time.Second, fmt.Sprintf("target ≤ TTL+1s (%s):", o.AgentTTL+time.Second)))
	fmt.Fprintln(w, "\nbeacon: the leader is a `beacon elect NAME -- sleep` process (or, for the agent row, a session on a")
	fmt.Fprintln(w, "proxy agent that is killed); when the process dies its agent revokes the session's lease at once.")
	fmt.Fprintln(w, "plain: a process holding etcd's concurrency.Election in a concurrency.Session with the same TTL; the")
	fmt.Fprintln(w, "waiter (concurrency.Election on the other endpoint) learns of the death only when the lease expires.")
	fmt.Fprintln(w, "For the plain way the leader process is its own lease keeper, so its death and its host's are alike.")
	return nil
}

type electBench struct {
	o         ElectionOptions
	self, dir string
	run       int64
	cli, cliB *clientv3.Client
	waiters   *client.Client
}

func (b *electBench) name(kind string, i int) string {
	return fmt.Sprintf("bench-%s-%d-%d", kind, b.run, i)
}

// beaconProcess: a `beacon elect` process leads; a session on the other
// agent waits; the leader process is killed.
func (b *electBench) beaconProcess(ctx context.Context, i int) (time.Duration, error) {
	name := b.name("proc", i)
	leader := exec.Command(b.self, "elect", name, "--agent", b.o.Agent, "--ttl", b.o.TTL.String(), "--", "sleep", "3600")
	if err := electStartAndWait(leader, true, "leading at rev"); err != nil {
		return 0, err
	}
	defer electKill(leader)
	return b.failover(ctx, name, b.waiters, b.o.TTL, func() { electKill(leader) })
}

// beaconAgent: a session on a proxy agent of its own leads; a session on
// the other agent waits; the proxy is killed, so its lease expires.
func (b *electBench) beaconAgent(ctx context.Context, i int) (time.Duration, error) {
	name := b.name("agent", i)
	p, err := startAgent(ctx, b.dir, fmt.Sprintf("bench-elect-p%d", i), "--role", "proxy", "--join", b.o.Endpoint)
	if err != nil {
		return 0, err
	}
	defer electKill(p.cmd)
	lc, err := client.New(p.API)
	if err != nil {
		return 0, err
	}
	defer lc.Close()
	ls, err := lc.NewSession(ctx, client.WithTTL(b.o.AgentTTL))
	if err != nil {
		return 0, err
	}
	if _, err := beaconpb.NewElectionClient(lc.Conn()).Campaign(ctx, &beaconpb.ElectionCampaignRequest{Name: name, SessionId: ls.ID}); err != nil {
		return 0, err
	}
	return b.failover(ctx, name, b.waiters, b.o.AgentTTL, func() { electKill(p.cmd) })
}

// failover campaigns on c behind the current leader, kills the leader and
// times the campaign's return.
func (b *electBench) failover(ctx context.Context, name string, c *client.Client, ttl time.Duration, kill func()) (time.Duration, error) {
	sess, err := c.NewSession(ctx, client.WithTTL(ttl))
	if err != nil {
		return 0, err
	}
	defer sess.Close()
	ec := beaconpb.NewElectionClient(c.Conn())
	won := make(chan error, 1)
	var at time.Time
	go func() {
		_, err := ec.Campaign(ctx, &beaconpb.ElectionCampaignRequest{Name: name, SessionId: sess.ID, Timeout: durationpb.New(time.Minute)})
		at = time.Now()
		won <- err
	}()
	if err := b.waitCandidates(ctx, "/beacon/elections/"+name+"/"); err != nil {
		return 0, err
	}
	t0 := time.Now()
	kill()
	if err := <-won; err != nil {
		return 0, err
	}
	return at.Sub(t0), nil
}

// plainProcess: a process of its own leads with concurrency.Election; a
// concurrency.Election on the other endpoint waits; the leader is killed.
func (b *electBench) plainProcess(ctx context.Context, i int, ttl time.Duration) (time.Duration, error) {
	pfx := "/bench/elections/" + b.name("plain", i)
	leader := exec.Command(b.self, "bench", "plain-elect", "--endpoint", b.o.Endpoint, "--election", pfx, "--ttl", ttl.String())
	if err := electStartAndWait(leader, false, "leader"); err != nil {
		return 0, err
	}
	defer electKill(leader)
	s, err := concurrency.NewSession(b.cliB, concurrency.WithTTL(int(ttl/time.Second)))
	if err != nil {
		return 0, err
	}
	defer s.Close()
	e := concurrency.NewElection(s, pfx)
	won := make(chan error, 1)
	var at time.Time
	go func() {
		err := e.Campaign(ctx, "waiter")
		at = time.Now()
		won <- err
	}()
	if err := b.waitCandidates(ctx, pfx+"/"); err != nil {
		return 0, err
	}
	t0 := time.Now()
	electKill(leader)
	if err := <-won; err != nil {
		return 0, err
	}
	_ = e.Resign(ctx)
	return at.Sub(t0), nil
}

// waitCandidates waits until two keys campaign under pfx: the leader and
// the waiter.
func (b *electBench) waitCandidates(ctx context.Context, pfx string) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := b.cli.Get(ctx, pfx, clientv3.WithPrefix(), clientv3.WithCountOnly())
		if err != nil {
			return err
		}
		if resp.Count >= 2 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the waiter never campaigned under %s", pfx)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// PlainElectLeader campaigns with etcd's concurrency.Election in a session
// this process keeps alive, prints "leader" once elected, and holds the
// leadership until ctx ends: the plain way's leader process.
func PlainElectLeader(ctx context.Context, w io.Writer, endpoint, election string, ttl time.Duration) error {
	cli, err := electEtcd(endpoint)
	if err != nil {
		return err
	}
	defer cli.Close()
	s, err := concurrency.NewSession(cli, concurrency.WithTTL(int(ttl/time.Second)))
	if err != nil {
		return err
	}
	defer s.Close()
	if err := concurrency.NewElection(s, election).Campaign(ctx, fmt.Sprint(os.Getpid())); err != nil {
		return err
	}
	fmt.Fprintln(w, "leader")
	<-ctx.Done()
	return nil
}

// electStartAndWait starts cmd and waits for a line containing marker on
// its stderr (or stdout).
func electStartAndWait(cmd *exec.Cmd, stderr bool, marker string) error {
	var r io.ReadCloser
	var err error
	if stderr {
		r, err = cmd.StderrPipe()
	} else {
		r, err = cmd.StdoutPipe()
	}
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	found := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(r)
		ok := false
		for sc.Scan() {
			if !ok && strings.Contains(sc.Text(), marker) {
				ok = true
				found <- true
			}
		}
		if !ok {
			found <- false
		}
	}()
	select {
	case ok := <-found:
		if ok {
			return nil
		}
		electKill(cmd)
		return fmt.Errorf("%s exited before %q", strings.Join(cmd.Args, " "), marker)
	case <-time.After(30 * time.Second):
		electKill(cmd)
		return fmt.Errorf("%s: no %q within 30s", strings.Join(cmd.Args, " "), marker)
	}
}

// electKill kills cmd with SIGKILL (once) and reaps it.
func electKill(cmd *exec.Cmd) {
	if cmd.ProcessState != nil {
		return
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
}

func electEtcd(endpoint string) (*clientv3.Client, error) {
	return newEtcdClient(endpoint)
}

func electMax(d []time.Duration) time.Duration {
	var m time.Duration
	for _, v := range d {
		m = max(m, v)
	}
	return m
}

func electRound(d time.Duration) time.Duration {
	if d > time.Second {
		return d.Round(10 * time.Millisecond)
	}
	return d.Round(10 * time.Microsecond)
}
