package bench

import (
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/beaconhq/beacon/api/beaconpb"
	"github.com/beaconhq/beacon/client"
	clientv3 "go.etcd.io/etcd/client/v3"
	recipe "go.etcd.io/etcd/client/v3/experimental/recipes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
)

// QueueOptions tune `beacon bench queue`.
type QueueOptions struct {
	Agent       string // agent API address; empty: start an agent
	Endpoint    string // the same cluster's etcd client URL, for the plain way
	Count       int    // messages per side and round
	Producers   int    // in the concurrent round
	Consumers   int    // in the concurrent round
	PayloadSize int
	SeparateAck bool // consumers call Ack, rather than acking within the next Reserve
}

// Queue measures messages per second, each enqueued, reserved and acked
// through the agent, against etcd's recipe queue (Enqueue, Dequeue) on the
// same cluster in the same run: one round with one producer and one
// consumer, one with several of each.
func Queue(ctx context.Context, w io.Writer, o QueueOptions) error {
	if o.Agent == "" {
		p, done, err := ownAgent(ctx, "bench-queue")
		if err != nil {
			return err
		}
		defer done()
		o.Agent, o.Endpoint = p.API, p.ClientURL
	}
	c, err := client.New(o.Agent)
	if err != nil {
		return err
	}
	defer c.Close()
	qc := beaconpb.NewQueueClient(c.Conn())
	payload := []byte(strings.Repeat("x", o.PayloadSize))
	run := time.Now().UnixNano() % 1000000

	type row struct {
		name          string
		beacon, plain float64
	}
	var rows []row
	rounds := []struct{ producers, consumers int }{{1, 1}, {o.Producers, o.Consumers}}
	for i, r := range rounds {
		// Warm both paths up on a small queue first (connections, views).
		if i == 0 {
			if _, err := queueBeacon(ctx, qc, c, fmt.Sprintf("bench-%d-warm", run), 50, 2, 2, payload, o.SeparateAck); err != nil {
				return fmt.Errorf("through the agent: %w", err)
			}
			if _, err := queuePlain(ctx, o.Endpoint, fmt.Sprintf("/bench/plain-queue-%d-warm", run), 50, 2, 2, payload); err != nil {
				return fmt.Errorf("plain way at %s: %w", o.Endpoint, err)
			}
		}
		b, err := queueBeacon(ctx, qc, c, fmt.Sprintf("bench-%d-%d", run, i), o.Count, r.producers, r.consumers, payload, o.SeparateAck)
		if err != nil {
			return fmt.Errorf("through the agent: %w", err)
		}
		p, err := queuePlain(ctx, o.Endpoint, fmt.Sprintf("/bench/plain-queue-%d-%d", run, i), o.Count, r.producers, r.consumers, payload)
		if err != nil {
			return fmt.Errorf("plain way at %s: %w", o.Endpoint, err)
		}
		rows = append(rows, row{fmt.Sprintf("msgs/s, %d prod, %d cons", r.producers, r.consumers), b, p})
	}

	fmt.Fprintf(w, "beacon bench queue: %d messages per side and round, %d-byte payloads\n\n", o.Count, o.PayloadSize)
	fmt.Fprintf(w, "%-28s %10s %10s %8s\n", "", "beacon", "plain", "ratio")
	for _, r := range rows {
		ratio := r.beacon / r.plain
		fmt.Fprintf(w, "%-28s %10.0f %10.0f %7.2fx   target ≥ 1.00x %s\n", r.name, r.beacon, r.plain, ratio, okIf(ratio >= 1))
	}
	how := "each Reserve acking the consumer's previous message in the same\ntransaction (ack_receipt)"
	if o.SeparateAck {
		how = "a separate Ack call per message"
	}
	fmt.Fprintln(w, "\nbeacon: through the agent's gRPC API, Queue.Enqueue; Reserve bound to the consumer's")
	fmt.Fprintf(w, "session (30s visibility); %s. The round ends when every message is acked.\n", how)
	fmt.Fprintln(w, "plain: etcd's recipes.Queue Enqueue and Dequeue on the same cluster; a message is")
	fmt.Fprintln(w, "counted when Dequeue returns it (no ack: a consumer that crashes loses it).")
	return nil
}

// queueBeacon runs one round through the agent and returns messages/s.
func queueBeacon(ctx context.Context, qc beaconpb.QueueClient, c *client.Client, queue string, count, producers, consumers int, payload []byte, separateAck bool) (float64, error) {
	var sessions []*client.Session
	defer func() {
		for _, s := range sessions {
			_ = s.Close()
		}
	}()
	for range consumers {
		s, err := c.NewSession(ctx, client.WithName("bench-queue"))
		if err != nil {
			return 0, err
		}
		sessions = append(sessions, s)
	}
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var reserved atomic.Int64
	var next atomic.Int64
	errs := make(chan error, producers+consumers)
	var wg sync.WaitGroup
	start := time.Now()
	for range producers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(count) {
				if _, err := qc.Enqueue(rctx, &beaconpb.QueueEnqueueRequest{Queue: queue, Payload: payload}); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	for i := range consumers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Each Reserve acks the consumer's previous message in its own
			// transaction (ack_receipt), unless SeparateAck; the last one
			// is acked alone.
			prev := ""
			for {
				if separateAck && prev != "" {
					if _, err := qc.Ack(ctx, &beaconpb.QueueAckRequest{Receipt: prev}); err != nil {
						errs <- err
						return
					}
					prev = ""
				}
				if reserved.Load() >= int64(count) {
					break
				}
				req := &beaconpb.QueueReserveRequest{Queue: queue, SessionId: sessions[i].ID, Wait: durationpb.New(30 * time.Second)}
				if !separateAck {
					req.AckReceipt = prev
				}
				resp, err := qc.Reserve(rctx, req)
				if err != nil {
					if rctx.Err() == nil {
						errs <- err
					}
					break // canceled: prev was acked before the wait began, or is acked below
				}
				prev = resp.Receipt
				if reserved.Add(1) == int64(count) {
					cancel() // release the consumers still waiting
				}
			}
			if prev != "" {
				_, err := qc.Ack(ctx, &beaconpb.QueueAckRequest{Receipt: prev})
				if err != nil && status.Code(err) != codes.FailedPrecondition {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	close(errs)
	if err := <-errs; err != nil {
		return 0, err
	}
	// Every message reserved once and acked: the queue is empty.
	st, err := qc.Stats(ctx, &beaconpb.QueueStatsRequest{Queue: queue})
	if err != nil {
		return 0, err
	}
	if n := reserved.Load(); n != int64(count) || st.Depth != 0 {
		return 0, fmt.Errorf("reserved %d of %d messages; %d left in the queue", n, count, st.Depth)
	}
	return float64(count) / elapsed.Seconds(), nil
}

// queuePlain runs one round on etcd's recipe queue and returns messages/s.
func queuePlain(ctx context.Context, endpoint, prefix string, count, producers, consumers int, payload []byte) (float64, error) {
	cli, err := newEtcdClient(endpoint)
	if err != nil {
		return 0, err
	}
	defer cli.Close()
	defer func() {
		// Leave nothing behind, the stop messages included.
		cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, _ = cli.Delete(cctx, prefix, clientv3.WithPrefix())
	}()
	q := recipe.NewQueue(cli, prefix)
	var taken, next atomic.Int64
	errs := make(chan error, producers+consumers+1)
	var wg sync.WaitGroup
	finished := make(chan time.Duration, 1)
	start := time.Now()
	for range producers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(count) && ctx.Err() == nil {
				if err := q.Enqueue(string(payload)); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	for range consumers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				// Dequeue has no context: the consumers still blocked when
				// the last message is taken are released by stop messages.
				if _, err := q.Dequeue(); err != nil {
					errs <- err
					return
				}
				n := taken.Add(1)
				if n == int64(count) {
					finished <- time.Since(start)
				}
				if n >= int64(count) {
					return
				}
			}
		}()
	}
	var elapsed time.Duration
	select {
	case elapsed = <-finished:
	case err := <-errs:
		return 0, err
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	for range consumers {
		if err := q.Enqueue("stop"); err != nil {
			return 0, err
		}
	}
	wg.Wait()
	return float64(count) / elapsed.Seconds(), nil
}
