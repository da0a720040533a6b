package bench

import (
	"context"
	"fmt"
	"io"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/beaconhq/beacon/api/beaconpb"
	"github.com/beaconhq/beacon/client"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// RegisterOptions tune `beacon bench register`.
type RegisterOptions struct {
	Agent       string // agent API address
	Endpoint    string // the same agent's etcd client URL, for the plain way
	Count       int    // registrations per side
	Concurrency int
}

// Register measures registrations per second through the agent (one
// session, Count instances) against the plain way on the same cluster: raw
// clientv3, one lease and Count puts under it.
func Register(ctx context.Context, w io.Writer, o RegisterOptions) error {
	c, err := client.New(o.Agent)
	if err != nil {
		return err
	}
	defer c.Close()
	sess, err := c.NewSession(ctx, client.WithName("bench-register"))
	if err != nil {
		return fmt.Errorf("opening a session on the agent at %s: %w", client.Addr(o.Agent), err)
	}
	defer sess.Close()

	cli, err := newEtcdClient(o.Endpoint)
	if err != nil {
		return err
	}
	defer cli.Close()
	lease, err := cli.Grant(ctx, 60)
	if err != nil {
		return fmt.Errorf("plain way at %s: %w", o.Endpoint, err)
	}
	defer cli.Revoke(context.Background(), lease.ID) //nolint:errcheck // cleanup

	run := time.Now().UnixNano() % 100000
	beacon, err := measure(ctx, o.Count, o.Concurrency, func(ctx context.Context, i int) error {
		_, err := c.Registry.Register(ctx, &beaconpb.RegisterRequest{SessionId: sess.ID, Instance: &beaconpb.Instance{
			Service: fmt.Sprintf("bench-reg-%d", run), Id: fmt.Sprintf("i%d", i), Address: "127.0.0.1", Port: uint32(1 + i%65535),
		}})
		return err
	})
	if err != nil {
		return fmt.Errorf("through the agent: %w", err)
	}
	value := `{"id":"i0","service":"bench-plain","node":"bench","address":"127.0.0.1","port":1,"weight":1,"priority":0,"status":"passing"}`
	plain, err := measure(ctx, o.Count, o.Concurrency, func(ctx context.Context, i int) error {
		_, err := cli.Put(ctx, fmt.Sprintf("/bench/plain-%d/services/bench-plain/i%d", run, i), value, clientv3.WithLease(lease.ID))
		return err
	})
	if err != nil {
		return fmt.Errorf("plain way: %w", err)
	}

	fmt.Fprintf(w, "beacon bench register: %d registrations per side, %d concurrent\n\n", o.Count, o.Concurrency)
	fmt.Fprintf(w, "%-26s %12s %12s %8s\n", "", "beacon", "plain", "ratio")
	fmt.Fprintf(w, "%-26s %12.0f %12.0f %7.2fx   target ≥ 0.80x\n", "registrations/s", beacon.rate, plain.rate, beacon.rate/plain.rate)
	fmt.Fprintf(w, "%-26s %12s %12s %7.2fx\n", "latency p50", beacon.p50.Round(time.Microsecond), plain.p50.Round(time.Microsecond), float64(beacon.p50)/float64(plain.p50))
	fmt.Fprintf(w, "%-26s %12s %12s %7.2fx\n", "latency p99", beacon.p99.Round(time.Microsecond), plain.p99.Round(time.Microsecond), float64(beacon.p99)/float64(plain.p99))
	fmt.Fprintln(w, "\nbeacon: Registry.Register in one session (a txn per instance, checked and validated);")
	fmt.Fprintln(w, "plain: clientv3 Put of the same value under one lease, to the same member.")
	return nil
}

type throughput struct {
	rate     float64
	p50, p99 time.Duration
}

// measure runs op count times over concurrency workers.
func measure(ctx context.Context, count, concurrency int, op func(context.Context, int) error) (throughput, error) {
	lat := make([]time.Duration, count)
	var next atomic.Int64
	var firstErr error
	var once sync.Once
	var wg sync.WaitGroup
	start := time.Now()
	for w := 0; w < concurrency; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= count || ctx.Err() != nil {
					return
				}
				t0 := time.Now()
				if err := op(ctx, i); err != nil {
					once.Do(func() { firstErr = err })
					return
				}
				lat[i] = time.Since(t0)
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return throughput{}, firstErr
	}
	elapsed := time.Since(start)
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	return throughput{rate: float64(count) / elapsed.Seconds(), p50: lat[count/2], p99: lat[count*99/100]}, nil
}
