package queue

import (
	"errors"
	"fmt"
	"testing"
	"time"

	mt "github.com/beaconhq/beacon/internal/metricstest"
)

// beacon_queue_messages follows a queue this agent consumes from, state
// by state, and names no queue it has no view of.
func TestQueueMetrics(t *testing.T) {
	b, q := newBroker(t, "a"), queueName(t)
	c := b.Metrics()
	mustEnqueue(t, b, q, "one")
	mustEnqueue(t, b, q, "two")
	mustEnqueue(t, b, q, "later", WithDelay(time.Hour))
	if _, ok := mt.Lookup(t, c, "beacon_queue_messages", "queue", q, "state", "ready"); ok {
		t.Fatal("a queue this agent has no view of is reported")
	}
	d := mustReserve(t, b, q, WithMaxDeliveries(1))
	want := func(state string, n float64) {
		t.Helper()
		mt.Wait(t, c, 10*time.Second, "beacon_queue_messages", mt.Is(n), "queue", q, "state", state)
	}
	want("inflight", 1)
	want("ready", 1)
	want("delayed", 1)
	want("dead", 0)
	// Nacked after its last delivery, the next Reserve buries it.
	if err := b.Nack(ctxT(t), d.Receipt, 0); err != nil {
		t.Fatal(err)
	}
	want("inflight", 0)
	want("ready", 2)
	d = mustReserve(t, b, q, WithMaxDeliveries(1))
	if string(d.Payload) != "two" {
		t.Fatalf("after the burial got %q", d.Payload)
	}
	want("dead", 1)
	want("inflight", 1)
	want("ready", 0)
	if err := b.Ack(ctxT(t), d.Receipt); err != nil {
		t.Fatal(err)
	}
	want("inflight", 0)
	want("delayed", 1)
}

// However many queue names clients ask about, at most MaxQueueSeries are
// named; the rest are summed as "other", and a queue holding messages is
// named before empty ones.
func TestQueueSeriesBounded(t *testing.T) {
	b, busy := newBroker(t, "a"), queueName(t)
	for range 3 {
		mustEnqueue(t, b, busy, "x")
	}
	for i := range MaxQueueSeries + 10 {
		// A wait (however short) follows the queue with a view; a bare
		// Reserve of an empty queue reads without one.
		if _, err := b.Reserve(ctxT(t), fmt.Sprintf("%s-empty-%03d", busy, i), WithWait(time.Millisecond)); !errors.Is(err, ErrEmpty) {
			t.Fatalf("reserve from an empty queue: %v", err)
		}
	}
	if _, err := b.Wait(ctxT(t), busy, 3); err != nil {
		t.Fatal(err)
	}
	queues := mt.LabelValues(t, b.Metrics(), "beacon_queue_messages", "queue")
	if len(queues) != MaxQueueSeries+1 || !queues["other"] || !queues[busy] {
		t.Fatalf("%d queues named (other: %v, the busy one: %v); want %d and other", len(queues), queues["other"], queues[busy], MaxQueueSeries)
	}
	if v := mt.Value(t, b.Metrics(), "beacon_queue_messages", "queue", busy, "state", "ready"); v != 3 {
		t.Fatalf("the busy queue's ready messages: %v, want 3", v)
	}
}
