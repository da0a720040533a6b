package bench

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/beaconhq/beacon/client"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	recipe "go.etcd.io/etcd/client/v3/experimental/recipes"
)

// BarrierOptions tune `beacon bench barrier`. With no Agents it starts
// its own three: a member and two proxies joined to it.
type BarrierOptions struct {
	Agents       []string // the agents' API addresses; participant i uses Agents[i%len]
	Endpoints    []string // the same agents' etcd client URLs, for the plain way
	Participants int
	Samples      int
}

// Barrier measures the trip: from the moment the last participant calls
// Enter to the moment Enter has returned on every participant (when each
// would start CMD), participants spread over the agents. Beside it in the
// same run, the plain way: etcd's recipe.DoubleBarrier, each participant
// with a concurrency.Session of its own on its agent's etcd endpoint.
func Barrier(ctx context.Context, w io.Writer, o BarrierOptions) error {
	if len(o.Agents) == 0 {
		dir, err := os.MkdirTemp("", "beacon-bench-barrier-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		agents, stopAll, err := startTrio(ctx, dir)
		if err != nil {
			return err
		}
		defer stopAll()
		for _, a := range agents {
			o.Agents, o.Endpoints = append(o.Agents, a.API), append(o.Endpoints, a.ClientURL)
		}
	}
	if len(o.Endpoints) != len(o.Agents) {
		return fmt.Errorf("give one etcd endpoint per agent (%d agents, %d endpoints)", len(o.Agents), len(o.Endpoints))
	}
	run := time.Now().UnixNano() % 100000
	beacon, err := barrierBeacon(ctx, o, run)
	if err != nil {
		return fmt.Errorf("beacon: %w", err)
	}
	plain, err := barrierPlain(ctx, o, run)
	if err != nil {
		return fmt.Errorf("plain: %w", err)
	}
	fmt.Fprintf(w, "beacon bench barrier: %d participants on %d agents (%s), %d rounds each way\n", o.Participants, len(o.Agents), strings.Join(o.Agents, ", "), o.Samples)
	fmt.Fprintf(w, "from the last participant's Enter to Enter returned on all of them (when each starts CMD)\n\n")
	fmt.Fprintf(w, "%-28s %10s %10s %10s\n", "", "beacon", "plain", "ratio")
	p50 := func(d []time.Duration) time.Duration { p, _ := percentiles(d); return p }
	for _, r := range []struct {
		what   string
		pick   func([]time.Duration) time.Duration
		target string
	}{
		{"all started, p50", p50, ""},
		{"all started, max", electMax, verdict(electMax(beacon) <= 50*time.Millisecond, "target ≤ 50ms:")},
	} {
		bv, pv := r.pick(beacon), r.pick(plain)
		fmt.Fprintf(w, "%-28s %10s %10s %9.2fx  %s\n", r.what, bv.Round(10*time.Microsecond), pv.Round(10*time.Microsecond), float64(bv)/float64(pv), r.target)
	}
	fmt.Fprintln(w, "\nbeacon: client.Barrier in a session of the participant's agent (the agent enters, watches and trips).")
	fmt.Fprintln(w, "plain: etcd's recipe.DoubleBarrier in a concurrency.Session on the participant's agent's etcd endpoint.")
	return nil
}

// startTrio starts a member and two proxies joined to it (startPair and
// one more proxy).
func startTrio(ctx context.Context, dir string) ([]*agentProc, func(), error) {
	member, proxy, stopPair, err := startPair(ctx, dir)
	if err != nil {
		return nil, nil, err
	}
	third, err := startAgent(ctx, dir, "bench-c", "--role", "proxy", "--join", member.ClientURL)
	if err != nil {
		stopPair()
		return nil, nil, err
	}
	return []*agentProc{member, proxy, third}, func() { stopPair(); stop(third.cmd) }, nil
}

// barrierRound enters n-1 participants, waits until present says they
// are in, enters the last and returns the time from its Enter to the
// last return. enter(i) blocks until participant i is through.
func barrierRound(ctx context.Context, n int, enter func(i int) error, present func() (int, error)) (time.Duration, error) {
	var mu sync.Mutex
	var last time.Time
	var firstErr error
	var wg sync.WaitGroup
	start := func(i int) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := enter(i)
			mu.Lock()
			defer mu.Unlock()
			if now := time.Now(); now.After(last) {
				last = now
			}
			if err != nil && firstErr == nil {
				firstErr = fmt.Errorf("participant %d: %w", i, err)
			}
		}()
	}
	for i := 0; i < n-1; i++ {
		start(i)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		k, err := present()
		if err != nil {
			return 0, err
		}
		if k >= n-1 {
			break
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return 0, fmt.Errorf("%d of %d participants entered within 30s", k, n-1)
		}
		time.Sleep(2 * time.Millisecond)
	}
	t0 := time.Now()
	start(n - 1)
	wg.Wait()
	if firstErr != nil {
		return 0, firstErr
	}
	return last.Sub(t0), nil
}

func countKeys(ctx context.Context, cli *clientv3.Client, prefix string) (int, error) {
	resp, err := cli.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		return 0, err
	}
	return int(resp.Count), nil
}

func barrierBeacon(ctx context.Context, o BarrierOptions, run int64) ([]time.Duration, error) {
	cli, err := newEtcdClient(o.Endpoints[0])
	if err != nil {
		return nil, err
	}
	defer cli.Close()
	clients := make([]*client.Client, len(o.Agents))
	for i, a := range o.Agents {
		if clients[i], err = client.New(a); err != nil {
			return nil, err
		}
		defer clients[i].Close()
	}
	sessions := make([]*client.Session, o.Participants)
	for i := range sessions {
		if sessions[i], err = clients[i%len(clients)].NewSession(ctx); err != nil {
			return nil, err
		}
		defer sessions[i].Close()
	}
	var out []time.Duration
	for s := 0; s < o.Samples; s++ {
		name := fmt.Sprintf("bench-%d-%d", run, s)
		entries := make([]*client.BarrierEntry, o.Participants)
		d, err := barrierRound(ctx, o.Participants, func(i int) error {
			e, err := clients[i%len(clients)].Barrier(sessions[i], name, o.Participants).Enter(ctx)
			entries[i] = e
			return err
		}, func() (int, error) { return countKeys(ctx, cli, "/beacon/barriers/"+name+"/rounds/") })
		for _, e := range entries {
			if e != nil {
				_ = e.Leave(ctx)
			}
		}
		if err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, nil
}

func barrierPlain(ctx context.Context, o BarrierOptions, run int64) ([]time.Duration, error) {
	clis := make([]*clientv3.Client, len(o.Endpoints))
	for i, ep := range o.Endpoints {
		var err error
		if clis[i], err = newEtcdClient(ep); err != nil {
			return nil, err
		}
		defer clis[i].Close()
	}
	sessions := make([]*concurrency.Session, o.Participants)
	for i := range sessions {
		var err error
		if sessions[i], err = concurrency.NewSession(clis[i%len(clis)]); err != nil {
			return nil, err
		}
		defer sessions[i].Close()
	}
	var out []time.Duration
	for s := 0; s < o.Samples; s++ {
		key := fmt.Sprintf("/bench-barrier-plain/%d/%d", run, s)
		bars := make([]*recipe.DoubleBarrier, o.Participants)
		for i := range bars {
			bars[i] = recipe.NewDoubleBarrier(sessions[i], key, o.Participants)
		}
		d, err := barrierRound(ctx, o.Participants, func(i int) error { return bars[i].Enter() },
			func() (int, error) { return countKeys(ctx, clis[0], key+"/waiters") })
		if err != nil {
			return nil, err
		}
		var wg sync.WaitGroup
		for _, b := range bars {
			wg.Add(1)
			go func() { defer wg.Done(); _ = b.Leave() }()
		}
		wg.Wait()
		out = append(out, d)
	}
	return out, nil
}
