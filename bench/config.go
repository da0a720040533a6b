package bench

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/beaconhq/beacon/api/beaconpb"
	"github.com/beaconhq/beacon/client"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// ConfigOptions tune `beacon bench config`. With no Agent, the benchmark
// starts its own agent.
type ConfigOptions struct {
	Agent    string // the agent's API address
	Endpoint string // the same agent's etcd client URL, for the plain way
	Samples  int
}

// Config measures how long a config change takes from Put to a watcher,
// through the agent (Config.Put, Config.Watch), against the plain way on
// the same member: a clientv3 Put seen by a clientv3 Watch.
func Config(ctx context.Context, w io.Writer, o ConfigOptions) error {
	if o.Agent == "" {
		a, done, err := ownAgent(ctx, "bench-config")
		if err != nil {
			return err
		}
		defer done()
		o.Agent, o.Endpoint = a.API, a.ClientURL
	}
	run := time.Now().UnixNano() % 100000
	beacon, err := configBeacon(ctx, o, run)
	if err != nil {
		return fmt.Errorf("through the agent: %w", err)
	}
	plain, err := configPlain(ctx, o, run)
	if err != nil {
		return fmt.Errorf("plain way: %w", err)
	}
	bp50, bp99 := percentiles(beacon)
	pp50, pp99 := percentiles(plain)
	fmt.Fprintf(w, "beacon bench config: %d changes per side, put and watched through %s\n\n", o.Samples, o.Agent)
	fmt.Fprintf(w, "%-30s %12s %12s %8s\n", "", "beacon", "plain", "ratio")
	fmt.Fprintf(w, "%-30s %12s %12s %7.2fx\n", "put → watcher p50", bp50.Round(time.Microsecond), pp50.Round(time.Microsecond), float64(bp50)/float64(pp50))
	fmt.Fprintf(w, "%-30s %12s %12s %7.2fx\n", "put → watcher p99", bp99.Round(time.Microsecond), pp99.Round(time.Microsecond), float64(bp99)/float64(pp99))
	fmt.Fprintln(w, "\nbeacon: Config.Put through the agent's gRPC API until its Config.Watch stream delivers the change")
	fmt.Fprintln(w, "(validated keys, revisions, relist on compaction). plain: clientv3 Put until a clientv3 Watch fires,")
	fmt.Fprintln(w, "on the same member's client URL. No target is set for config; the ratio is the cost of the agent hop.")
	return nil
}

func configBeacon(ctx context.Context, o ConfigOptions, run int64) ([]time.Duration, error) {
	c, err := client.New(o.Agent)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	cc := c.Config()
	prefix := fmt.Sprintf("bench/config-%d/", run)
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := cc.Watch(wctx, &beaconpb.ConfigWatchRequest{Prefix: prefix})
	if err != nil {
		return nil, err
	}
	if m, err := stream.Recv(); err != nil || m.Type != beaconpb.ConfigWatchResponse_SNAPSHOT {
		return nil, fmt.Errorf("no snapshot: %v", err)
	}
	out := make([]time.Duration, 0, o.Samples)
	for i := 0; i < o.Samples; i++ {
		key := fmt.Sprintf("%s%d", prefix, i%100)
		t0 := time.Now()
		resp, err := cc.Put(ctx, &beaconpb.ConfigPutRequest{Key: key, Value: []byte("x")})
		if err != nil {
			return nil, err
		}
		for {
			m, err := stream.Recv()
			if err != nil {
				return nil, err
			}
			if m.Revision >= resp.Revision {
				break
			}
		}
		out = append(out, time.Since(t0))
	}
	for i := 0; i < 100 && i < o.Samples; i++ {
		_, _ = cc.Delete(ctx, &beaconpb.ConfigDeleteRequest{Key: fmt.Sprintf("%s%d", prefix, i)})
	}
	return out, nil
}

func configPlain(ctx context.Context, o ConfigOptions, run int64) ([]time.Duration, error) {
	cli, err := newEtcdClient(o.Endpoint)
	if err != nil {
		return nil, err
	}
	defer cli.Close()
	prefix := fmt.Sprintf("/bench/config-plain-%d/", run)
	defer cli.Delete(context.Background(), prefix, clientv3.WithPrefix()) //nolint:errcheck // cleanup
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	wch := cli.Watch(clientv3.WithRequireLeader(wctx), prefix, clientv3.WithPrefix(), clientv3.WithCreatedNotify())
	if wr := <-wch; wr.Err() != nil {
		return nil, wr.Err()
	}
	out := make([]time.Duration, 0, o.Samples)
	for i := 0; i < o.Samples; i++ {
		t0 := time.Now()
		resp, err := cli.Put(ctx, fmt.Sprintf("%s%d", prefix, i%100), "x")
		if err != nil {
			return nil, err
		}
		for seen := false; !seen; {
			select {
			case wr, ok := <-wch:
				if !ok || wr.Err() != nil {
					return nil, fmt.Errorf("watch ended: %v", wr.Err())
				}
				for _, ev := range wr.Events {
					seen = seen || ev.Kv.ModRevision >= resp.Header.Revision
				}
			case <-time.After(10 * time.Second):
				return nil, fmt.Errorf("the watch saw nothing")
			}
		}
		out = append(out, time.Since(t0))
	}
	return out, nil
}
