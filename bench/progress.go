package bench

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/beaconhq/beacon/api/beaconpb"
	"github.com/beaconhq/beacon/client"
	"github.com/beaconhq/beacon/internal/progressrelay"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/types/known/durationpb"
)

// ProgressOptions tune `beacon bench progress`. With no Agent, the
// benchmark starts its own agent.
type ProgressOptions struct {
	Agent    string // the agent's API address
	Endpoint string // the same agent's etcd client URL, for the plain way
	Samples  int
}

// Progress measures how long a worker's progress report takes until a
// Stats call shows it: through the agent (Queue.Progress on a
// reservation, then Queue.Stats with its in-flight listing), and through
// the relay `beacon progress` uses (a unix socket to the worker's beacon,
// then the same), against the plain way on the same member: a clientv3
// Put under a lease, then a Get that returns it.
func Progress(ctx context.Context, w io.Writer, o ProgressOptions) error {
	if o.Agent == "" {
		a, done, err := ownAgent(ctx, "bench-progress")
		if err != nil {
			return err
		}
		defer done()
		o.Agent, o.Endpoint = a.API, a.ClientURL
	}
	run := time.Now().UnixNano() % 100000
	direct, relayed, err := progressBeacon(ctx, o, run)
	if err != nil {
		return fmt.Errorf("through the agent: %w", err)
	}
	plain, err := progressPlain(ctx, o, run)
	if err != nil {
		return fmt.Errorf("plain way: %w", err)
	}
	pp50, pp99 := percentiles(plain)
	fmt.Fprintf(w, "beacon bench progress: %d reports per side, through %s\n\n", o.Samples, o.Agent)
	fmt.Fprintf(w, "%-36s %12s %12s %8s\n", "", "beacon", "plain", "ratio")
	for _, row := range []struct {
		name string
		d    []time.Duration
	}{{"report → visible in Stats", direct}, {"via the relay → visible in Stats", relayed}} {
		b50, b99 := percentiles(row.d)
		fmt.Fprintf(w, "%-36s %12s %12s %7.2fx\n", row.name+" p50", b50.Round(time.Microsecond), pp50.Round(time.Microsecond), float64(b50)/float64(pp50))
		fmt.Fprintf(w, "%-36s %12s %12s %7.2fx\n", row.name+" p99", b99.Round(time.Microsecond), pp99.Round(time.Microsecond), float64(b99)/float64(pp99))
	}
	fmt.Fprintln(w, "\nbeacon: Queue.Progress on a reservation held in a session (its receipt and session checked, one")
	fmt.Fprintln(w, "transaction comparing the reservation), until Queue.Stats --in-flight shows it; via the relay: the same")
	fmt.Fprintln(w, "sent over the worker's unix socket as `beacon progress` does (its process start not included).")
	fmt.Fprintln(w, "plain: clientv3 Put under a lease until a clientv3 Get returns it, on the same member. Target: 100 ms.")
	return nil
}

func progressBeacon(ctx context.Context, o ProgressOptions, run int64) (direct, relayed []time.Duration, err error) {
	c, err := client.New(o.Agent)
	if err != nil {
		return nil, nil, err
	}
	defer c.Close()
	sess, err := c.NewSession(ctx, client.WithName("bench progress"))
	if err != nil {
		return nil, nil, err
	}
	defer sess.Close()
	queue := fmt.Sprintf("bench-progress-%d", run)
	qc := beaconpb.NewQueueClient(c.Conn())
	if _, err := qc.Enqueue(ctx, &beaconpb.QueueEnqueueRequest{Queue: queue, Payload: []byte("job")}); err != nil {
		return nil, nil, err
	}
	r, err := c.Reserve(ctx, sess, &beaconpb.QueueReserveRequest{Queue: queue, Visibility: durationpb.New(time.Hour)})
	if err != nil {
		return nil, nil, err
	}
	defer r.Ack(context.Background()) //nolint:errcheck // cleanup
	seen := func(i int) error {
		for try := 0; try < 1000; try++ {
			s, err := c.QueueStats(ctx, queue, true)
			if err != nil {
				return err
			}
			if m := s.InFlightMessages; len(m) == 1 && m[0].ProgressMessage == fmt.Sprintf("step %d", i) {
				return nil
			}
		}
		return fmt.Errorf("report %d never showed", i)
	}
	for i := 0; i < o.Samples; i++ {
		t0 := time.Now()
		if err := r.Progress(ctx, i%101, fmt.Sprintf("step %d", i)); err != nil {
			return nil, nil, err
		}
		if err := seen(i); err != nil {
			return nil, nil, err
		}
		direct = append(direct, time.Since(t0))
	}
	relay, err := progressrelay.Start(r.Progress)
	if err != nil {
		return nil, nil, err
	}
	defer relay.Close()
	for i := o.Samples; i < 2*o.Samples; i++ {
		// Apart by the relay's interval, so that each report goes at once.
		time.Sleep(progressrelay.MinInterval)
		t0 := time.Now()
		if err := progressrelay.Report(ctx, relay.Path(), i%101, fmt.Sprintf("step %d", i)); err != nil {
			return nil, nil, err
		}
		if err := seen(i); err != nil {
			return nil, nil, err
		}
		relayed = append(relayed, time.Since(t0))
	}
	return direct, relayed, nil
}

func progressPlain(ctx context.Context, o ProgressOptions, run int64) ([]time.Duration, error) {
	cli, err := newEtcdClient(o.Endpoint)
	if err != nil {
		return nil, err
	}
	defer cli.Close()
	lease, err := cli.Grant(ctx, 60)
	if err != nil {
		return nil, err
	}
	defer cli.Revoke(context.Background(), lease.ID) //nolint:errcheck // cleanup
	key := fmt.Sprintf("/bench/progress-plain-%d", run)
	out := make([]time.Duration, 0, o.Samples)
	for i := 0; i < o.Samples; i++ {
		want := fmt.Sprintf(`{"percent":%d,"message":"step %d"}`, i%101, i)
		t0 := time.Now()
		if _, err := cli.Put(ctx, key, want, clientv3.WithLease(lease.ID)); err != nil {
			return nil, err
		}
		for try := 0; ; try++ {
			resp, err := cli.Get(ctx, key)
			if err != nil {
				return nil, err
			}
			if len(resp.Kvs) == 1 && string(resp.Kvs[0].Value) == want {
				break
			}
			if try == 1000 {
				return nil, fmt.Errorf("put %d never showed", i)
			}
		}
		out = append(out, time.Since(t0))
	}
	return out, nil
}
