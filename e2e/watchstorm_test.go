package e2e

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/beaconhq/beacon/api/beaconpb"
	"github.com/beaconhq/beacon/client"
	"github.com/beaconhq/beacon/internal/testcluster"
	"github.com/miekg/dns"
)

// Bounds of the storm: how many API watch streams are opened and
// cancelled, how many at once, and how long the whole storm may take.
const (
	stormConfigWatches = 3000
	stormObserves      = 200
	stormConcurrency   = 64
	stormWithin        = 2 * time.Minute
	stormStreamWithin  = 10 * time.Second // one stream's open, first message and cancel
)

// TestWatchStorm (issue 8): thousands of API watch streams opened and
// cancelled on a member agent must not freeze it. The agent's catalog
// must stay live (a registration answers in its DNS within a second), its
// API watches must still deliver, and SIGTERM must still stop it quickly.
// The agent's own etcd watches used to share the in-process channel
// transport of the embedded member with every API watcher, and a storm of
// cancels deadlocked that transport for good.
func TestWatchStorm(t *testing.T) {
	c := testcluster.New(t)
	a := c.Host("a")
	a.Start()
	a.WaitReady(readyWithin)

	cl, err := client.New(a.APIAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	cc := cl.Config()
	ec := beaconpb.NewElectionClient(cl.Conn())

	// The control: before the storm a registration shows within the bound,
	// so a miss after it is the storm's doing.
	if took, ok := registerAndResolve(t, cl, a, "before-storm"); !ok {
		t.Fatalf("before the storm: no DNS answer within %s of Register", took.Round(time.Millisecond))
	}

	ctx, cancel := context.WithTimeout(context.Background(), stormWithin)
	defer cancel()
	start := time.Now()
	runStorm(t, ctx, "Config.Watch", stormConfigWatches, func(ctx context.Context, i int) error {
		sctx, scancel := context.WithCancel(ctx)
		defer scancel()
		stream, err := cc.Watch(sctx, &beaconpb.ConfigWatchRequest{Prefix: fmt.Sprintf("storm/%d/", i%8)})
		if err != nil {
			return err
		}
		if i%2 == 0 {
			// Cancelled at once: the agent may be anywhere in setting
			// the watch up.
			return nil
		}
		// Cancelled once the agent has sent the snapshot: the watch is
		// following, or about to.
		if _, err = stream.Recv(); err != nil || i%16 != 1 {
			return err
		}
		// Now and then, cancelled only once a change came through: the
		// storm's watches work while it lasts.
		put, err := cc.Put(sctx, &beaconpb.ConfigPutRequest{Key: fmt.Sprintf("storm/%d/k%d", i%8, i), Value: []byte("v")})
		if err != nil {
			return err
		}
		for {
			resp, err := stream.Recv()
			if err != nil {
				return fmt.Errorf("waiting for the change at revision %d: %w", put.Revision, err)
			}
			if resp.Revision >= put.Revision {
				return nil
			}
		}
	})
	t.Logf("%d Config.Watch streams opened and cancelled in %s", stormConfigWatches, time.Since(start).Round(time.Millisecond))

	start = time.Now()
	runStorm(t, ctx, "Election.Observe", stormObserves, func(ctx context.Context, i int) error {
		sctx, scancel := context.WithCancel(ctx)
		defer scancel()
		stream, err := ec.Observe(sctx, &beaconpb.ElectionObserveRequest{Name: fmt.Sprintf("storm-%d", i%4)})
		if err != nil {
			return err
		}
		if i%2 == 0 {
			return nil
		}
		_, err = stream.Recv()
		return err
	})
	t.Logf("%d Election.Observe streams opened and cancelled in %s", stormObserves, time.Since(start).Round(time.Millisecond))

	// The catalog follows etcd: a new registration answers in DNS within
	// a second of Register returning. A miss is reported, not fatal, so
	// that the checks below still say how frozen the agent is.
	if took, ok := registerAndResolve(t, cl, a, "after-storm"); ok {
		t.Logf("after the storm: the registration answered in DNS %s after Register", took.Round(time.Millisecond))
	} else {
		t.Errorf("after the storm: no DNS answer for the new registration within %s of Register, want within 1s", took.Round(time.Millisecond))
	}

	// API watches still deliver: a change reaches a new Config.Watch.
	configWatchDelivers(t, cc)

	// SIGTERM still stops the agent, within a few seconds.
	start = time.Now()
	if err := syscall.Kill(a.Pid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := a.WaitExit(10 * time.Second); err != nil {
		t.Fatalf("SIGTERM: agent exited with %v; log:\n%s", err, stormTail(a.Log(), 20))
	}
	t.Logf("SIGTERM stopped the agent in %s", time.Since(start).Round(time.Millisecond))
}

// runStorm runs op n times, stormConcurrency at a time, each run bounded
// by stormStreamWithin and all of them by ctx. It fails the test (and
// goes on, so that the checks after the storm still report) if the runs
// do not all finish, or if any fails.
func runStorm(t *testing.T, ctx context.Context, what string, n int, op func(ctx context.Context, i int) error) {
	t.Helper()
	var (
		next, done atomic.Int64
		mu         sync.Mutex
		errs       []error
		wg         sync.WaitGroup
	)
	for w := 0; w < stormConcurrency; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				octx, cancel := context.WithTimeout(ctx, stormStreamWithin)
				err := op(octx, i)
				cancel()
				if err != nil {
					mu.Lock()
					errs = append(errs, fmt.Errorf("stream %d: %w", i, err))
					mu.Unlock()
				}
				done.Add(1)
			}
		}()
	}
	wg.Wait()
	if got := done.Load(); got < int64(n) {
		t.Errorf("%s storm: only %d of %d streams done within %s (%d failed, first: %v)", what, got, n, stormWithin, len(errs), firstErr(errs))
	} else if len(errs) > 0 {
		t.Errorf("%s storm: %d of %d streams failed, first: %v", what, len(errs), n, errs[0])
	}
}

func firstErr(errs []error) error {
	if len(errs) == 0 {
		return nil
	}
	return errs[0]
}

// registerAndResolve registers an agent-owned instance of service over
// gRPC, then polls the agent's DNS every 20ms for it. It returns how long
// after Register returned the answer came, and false if none came within
// 1s, the bound the callers hold the agent to.
func registerAndResolve(t *testing.T, cl *client.Client, a *testcluster.Agent, service string) (time.Duration, bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := cl.Registry.Register(ctx, &beaconpb.RegisterRequest{
		Instance: &beaconpb.Instance{Service: service, Id: service + "-1", Address: "127.0.0.1", Port: 9000},
	})
	if err != nil {
		t.Fatalf("Register %s: %v", service, err)
	}
	registered := time.Now()
	name := service + ".service.beacon"
	target := service + "-1." + name
	var last []string
	for time.Since(registered) <= time.Second {
		last = dnsQuick(a, name, dns.TypeSRV)
		if has(target)(last) {
			return time.Since(registered), true
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("%s's DNS for %s: last answer %v, want an SRV for %s", a.Name, name, last, target)
	return time.Since(registered), false
}

// dnsQuick asks the agent's DNS once, with a short timeout so that a poll
// loop keeps its pace.
func dnsQuick(a *testcluster.Agent, name string, qtype uint16) []string {
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	c := &dns.Client{Timeout: 200 * time.Millisecond}
	r, _, err := c.Exchange(m, a.DNSAddr)
	if err != nil {
		return []string{"error: " + err.Error()}
	}
	var out []string
	for _, rr := range r.Answer {
		out = append(out, rr.String())
	}
	return out
}

// configWatchDelivers opens a Config.Watch, puts a key under its prefix,
// and waits (at most 5s) for the change.
func configWatchDelivers(t *testing.T, cc beaconpb.ConfigClient) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	stream, err := cc.Watch(ctx, &beaconpb.ConfigWatchRequest{Prefix: "after-storm/"})
	if err != nil {
		t.Errorf("Config.Watch after the storm: %v", err)
		return
	}
	if _, err := stream.Recv(); err != nil {
		t.Errorf("Config.Watch after the storm: no snapshot: %v", err)
		return
	}
	put, err := cc.Put(ctx, &beaconpb.ConfigPutRequest{Key: "after-storm/k", Value: []byte("v")})
	if err != nil {
		t.Errorf("Config.Put after the storm: %v", err)
		return
	}
	for {
		resp, err := stream.Recv()
		if err != nil {
			t.Errorf("Config.Watch after the storm: the put at revision %d never arrived: %v", put.Revision, err)
			return
		}
		if resp.Type == beaconpb.ConfigWatchResponse_CHANGES && resp.Revision >= put.Revision {
			return
		}
	}
}

func stormTail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
