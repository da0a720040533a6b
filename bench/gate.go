package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/beaconhq/beacon/api/beaconpb"
	"github.com/beaconhq/beacon/client"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/types/known/durationpb"
)

// GateOptions tune `beacon bench gate`. With no Agent it starts its own
// pair: the key is written and the message pushed on the member A, the
// workers wait on the proxy B.
type GateOptions struct {
	Agent     string // agent API address where the gate is set and the message pushed
	AgentB    string // the workers' agent API address (default Agent)
	Endpoint  string // Agent's etcd client URL: where the key is flipped, both ways
	EndpointB string // the plain workers' etcd client URL (default Endpoint)
	Samples   int
	Workers   int // waiting workers per sample, each way
}

// Gate measures scenario (c) of a gated queue: from the put that flips a
// config key to the first reserve that succeeds on a worker waiting on
// another agent. beacon: the queue's gate is `--key K=go`; the agent's
// view sees the key, opens the gate in one transaction with the key's
// compare, and the workers' waiting Reserves take the message. Plain: the
// workers watch the key with clientv3 themselves and, when it flips, take
// the first key of a queue prefix with a Get and a delete transaction.
func Gate(ctx context.Context, w io.Writer, o GateOptions) error {
	dir, err := os.MkdirTemp("", "beacon-bench-gate-")
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
	g := &gateBench{o: o, run: time.Now().UnixNano() % 1000000}
	if g.a, err = client.New(o.Agent); err != nil {
		return err
	}
	defer g.a.Close()
	if g.b, err = client.New(o.AgentB); err != nil {
		return err
	}
	defer g.b.Close()
	if g.flip, err = newEtcdClient(o.Endpoint); err != nil {
		return err
	}
	defer g.flip.Close()
	if g.plain, err = newEtcdClient(o.EndpointB); err != nil {
		return err
	}
	defer g.plain.Close()

	var bs, ps []time.Duration
	for i := -1; i < o.Samples; i++ { // sample -1 warms both ways up
		b, err := g.beacon(ctx, i)
		if err != nil {
			return fmt.Errorf("beacon, sample %d: %w", i, err)
		}
		p, err := g.plainWay(ctx, i)
		if err != nil {
			return fmt.Errorf("plain, sample %d: %w", i, err)
		}
		if i >= 0 {
			bs, ps = append(bs, b), append(ps, p)
		}
	}
	fmt.Fprintf(w, "beacon bench gate: from the put that flips a config key to the first reserve that succeeds,\n")
	fmt.Fprintf(w, "%d workers waiting on %s, the key written on %s; %d samples\n\n", o.Workers, o.AgentB, o.Agent, o.Samples)
	fmt.Fprintf(w, "%-8s %10s %10s %9s\n", "", "beacon", "plain", "ratio")
	bp50, _ := percentiles(bs)
	pp50, _ := percentiles(ps)
	fmt.Fprintf(w, "%-8s %10s %10s %8.2fx  %s\n", "p50", electRound(bp50), electRound(pp50), float64(bp50)/float64(pp50),
		verdict(bp50 < 50*time.Millisecond, "target < 50ms:"))
	fmt.Fprintf(w, "%-8s %10s %10s %8.2fx\n", "max", electRound(electMax(bs)), electRound(electMax(ps)), float64(electMax(bs))/float64(electMax(ps)))
	fmt.Fprintln(w, "\nbeacon: Queue.Gate --key K=go; the workers' Reserve (wait 10s) on the other agent; the agent's")
	fmt.Fprintln(w, "view opens the gate (one transaction comparing the key), then the reserve transaction: two writes.")
	fmt.Fprintln(w, "plain: each worker watches the key with clientv3 and then takes the first key under a prefix with")
	fmt.Fprintln(w, "a Get and a delete transaction: one write, and no gate, ack or redelivery.")
	return nil
}

type gateBench struct {
	o           GateOptions
	run         int64
	a, b        *client.Client
	flip, plain *clientv3.Client
}

// beacon runs one sample through the agents.
func (g *gateBench) beacon(ctx context.Context, i int) (time.Duration, error) {
	queue, key := fmt.Sprintf("bench-gate-%d-%d", g.run, i), fmt.Sprintf("bench/gate-%d-%d", g.run, i)
	if _, err := g.a.SetQueueGate(ctx, queue, client.GateKeyValue(key, []byte("go"))); err != nil {
		return 0, err
	}
	qa, qb := beaconpb.NewQueueClient(g.a.Conn()), beaconpb.NewQueueClient(g.b.Conn())
	if _, err := qa.Enqueue(ctx, &beaconpb.QueueEnqueueRequest{Queue: queue, Payload: []byte("job")}); err != nil {
		return 0, err
	}
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	return g.race(wctx, func(ctx context.Context) error {
		r, err := qb.Reserve(ctx, &beaconpb.QueueReserveRequest{Queue: queue, Wait: durationpb.New(10 * time.Second)})
		if err == nil {
			cancel() // the others stop waiting
			_, err = qb.Ack(context.WithoutCancel(ctx), &beaconpb.QueueAckRequest{Receipt: r.Receipt})
		}
		return err
	}, "/beacon/config/"+key)
}

// plainWay runs one sample with clientv3 alone.
func (g *gateBench) plainWay(ctx context.Context, i int) (time.Duration, error) {
	prefix, key := fmt.Sprintf("/bench/plain-gate-%d-%d/q/", g.run, i), fmt.Sprintf("/bench/plain-gate-%d-%d/go", g.run, i)
	if _, err := g.flip.Put(ctx, prefix+"1", "job"); err != nil {
		return 0, err
	}
	defer g.flip.Delete(context.WithoutCancel(ctx), fmt.Sprintf("/bench/plain-gate-%d-%d/", g.run, i), clientv3.WithPrefix())
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var ready sync.WaitGroup
	ready.Add(g.o.Workers)
	start := make(chan struct{})
	return g.race(wctx, func(ctx context.Context) error {
		// Watch from the revision read, so that a flip in between is seen.
		got, err := g.plain.Get(ctx, key)
		ready.Done()
		if err != nil {
			return err
		}
		<-start
		if len(got.Kvs) == 0 || string(got.Kvs[0].Value) != "go" {
			if err := plainWaitFor(ctx, g.plain, key, got.Header.Revision+1); err != nil {
				return err
			}
		}
		for {
			first, err := g.plain.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithLimit(1))
			if err != nil || len(first.Kvs) == 0 {
				return err // taken by another worker: nil
			}
			kv := first.Kvs[0]
			tx, err := g.plain.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(string(kv.Key)), "=", kv.ModRevision)).
				Then(clientv3.OpDelete(string(kv.Key))).Commit()
			if err != nil {
				return err
			}
			if tx.Succeeded {
				cancel()
				return nil
			}
		}
	}, key, func() { ready.Wait(); close(start) })
}

func plainWaitFor(ctx context.Context, cli *clientv3.Client, key string, rev int64) error {
	for resp := range cli.Watch(ctx, key, clientv3.WithRev(rev)) {
		if err := resp.Err(); err != nil {
			return err
		}
		for _, ev := range resp.Events {
			if ev.Type == clientv3.EventTypePut && string(ev.Kv.Value) == "go" {
				return nil
			}
		}
	}
	return ctx.Err()
}

// race starts the workers, lets them reach their wait, flips key and
// returns the time from the flip to the first worker's success.
func (g *gateBench) race(ctx context.Context, work func(context.Context) error, key string, beforeFlip ...func()) (time.Duration, error) {
	var mu sync.Mutex
	var first time.Time
	errs := make(chan error, g.o.Workers)
	var wg sync.WaitGroup
	for range g.o.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := work(ctx)
			now := time.Now()
			if err == nil {
				mu.Lock()
				if first.IsZero() {
					first = now
				}
				mu.Unlock()
			} else if !errors.Is(err, context.Canceled) && ctx.Err() == nil {
				errs <- err
			}
		}()
	}
	for _, f := range beforeFlip {
		f()
	}
	// The workers' calls reach their waits: a benchmark may pause for that.
	time.Sleep(300 * time.Millisecond)
	flipped := time.Now()
	if _, err := g.flip.Put(ctx, key, "go"); err != nil {
		return 0, err
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return 0, err
	}
	mu.Lock()
	defer mu.Unlock()
	if first.IsZero() {
		return 0, errors.New("no worker got the message within 10s")
	}
	return first.Sub(flipped), nil
}
