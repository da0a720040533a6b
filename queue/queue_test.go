package queue

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func mustEnqueue(t *testing.T, b *Broker, q, payload string, opts ...EnqueueOption) string {
	t.Helper()
	id, dup, err := b.Enqueue(ctxT(t), q, []byte(payload), opts...)
	if err != nil || dup {
		t.Fatalf("enqueue %q: id %q dup %v err %v", payload, id, dup, err)
	}
	return id
}

func mustReserve(t *testing.T, b *Broker, q string, opts ...ReserveOption) *Delivery {
	t.Helper()
	d, err := b.Reserve(ctxT(t), q, opts...)
	if err != nil {
		t.Fatalf("reserve from %s: %v", q, err)
	}
	return d
}

func TestFIFOSingleConsumer(t *testing.T) {
	b, q := newBroker(t, "a"), queueName(t)
	var ids []string
	for i := range 20 {
		ids = append(ids, mustEnqueue(t, b, q, fmt.Sprint("m", i)))
	}
	for i := range 20 {
		d := mustReserve(t, b, q)
		if d.ID != ids[i] || string(d.Payload) != fmt.Sprint("m", i) || d.Deliveries != 1 {
			t.Fatalf("delivery %d: got id %s payload %q deliveries %d, want id %s payload m%d", i, d.ID, d.Payload, d.Deliveries, ids[i], i)
		}
		if err := b.Ack(ctxT(t), d.Receipt); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := b.Reserve(ctxT(t), q); !errors.Is(err, ErrEmpty) {
		t.Fatalf("reserve from an empty queue: %v, want ErrEmpty", err)
	}
}

// Concurrent producers on two brokers (two agents) and consumers on both:
// every message is delivered exactly once when nobody crashes.
func TestConcurrentProducersAndConsumers(t *testing.T) {
	b1, b2, q := newBroker(t, "a"), newBroker(t, "b"), queueName(t)
	const producers, each = 8, 40
	var wg sync.WaitGroup
	ids := make(chan string, producers*each)
	for p := range producers {
		b := []*Broker{b1, b2}[p%2]
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				id, _, err := b.Enqueue(ctxT(t), q, []byte(fmt.Sprintf("%d-%d", p, i)))
				if err != nil {
					t.Error(err)
					return
				}
				ids <- id
			}
		}()
	}
	var mu sync.Mutex
	got := map[string]int{}
	for c := range 6 {
		b := []*Broker{b1, b2}[c%2]
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				d, err := b.Reserve(ctxT(t), q, WithWait(500*time.Millisecond))
				if errors.Is(err, ErrEmpty) {
					return
				}
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				got[string(d.Payload)]++
				mu.Unlock()
				if err := b.Ack(ctxT(t), d.Receipt); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(ids)
	seen := map[string]bool{}
	for id := range ids {
		if seen[id] {
			t.Errorf("id %s handed out twice", id)
		}
		seen[id] = true
	}
	for p := range producers {
		for i := range each {
			if n := got[fmt.Sprintf("%d-%d", p, i)]; n != 1 {
				t.Errorf("message %d-%d delivered %d times", p, i, n)
			}
		}
	}
	if st, err := b1.Stats(ctxT(t), q); err != nil || st.Depth != 0 {
		t.Fatalf("stats after draining: %+v %v", st, err)
	}
}

func TestStaleReceiptAfterVisibilityTimeout(t *testing.T) {
	b1, b2, q := newBroker(t, "a"), newBroker(t, "b"), queueName(t)
	mustEnqueue(t, b1, q, "x")
	first := mustReserve(t, b1, q, WithVisibility(100*time.Millisecond))
	// The other agent waits for the deadline and takes it over.
	second := mustReserve(t, b2, q, WithWait(10*time.Second))
	if second.ID != first.ID || second.Deliveries != 2 || second.Receipt == first.Receipt {
		t.Fatalf("second delivery %+v after first %+v", second, first)
	}
	for name, op := range map[string]func() error{
		"ack":    func() error { return b1.Ack(ctxT(t), first.Receipt) },
		"nack":   func() error { return b1.Nack(ctxT(t), first.Receipt, 0) },
		"extend": func() error { _, err := b1.Extend(ctxT(t), first.Receipt, time.Second); return err },
	} {
		if err := op(); !errors.Is(err, ErrStaleReceipt) {
			t.Errorf("%s with the stale receipt: %v, want ErrStaleReceipt", name, err)
		}
	}
	if err := b2.Ack(ctxT(t), second.Receipt); err != nil {
		t.Fatal(err)
	}
	if err := b2.Ack(ctxT(t), second.Receipt); !errors.Is(err, ErrStaleReceipt) {
		t.Fatalf("second ack: %v, want ErrStaleReceipt", err)
	}
}

// A reservation under a lease ends with the lease: a waiting consumer gets
// the message at once, long before the visibility timeout.
func TestReservationEndsWithSessionLease(t *testing.T) {
	b1, b2, q := newBroker(t, "a"), newBroker(t, "b"), queueName(t)
	mustEnqueue(t, b1, q, "x")
	lease, err := b1.cli.Grant(ctxT(t), 60)
	if err != nil {
		t.Fatal(err)
	}
	first := mustReserve(t, b1, q, WithSession(func() clientv3.LeaseID { return lease.ID }), WithVisibility(time.Hour))
	got := make(chan *Delivery, 1)
	go func() {
		d, err := b2.Reserve(ctxT(t), q, WithWait(20*time.Second))
		if err != nil {
			t.Error(err)
		}
		got <- d
	}()
	if _, err := b1.cli.Revoke(ctxT(t), lease.ID); err != nil {
		t.Fatal(err)
	}
	second := <-got
	if second == nil || second.ID != first.ID || second.Deliveries != 2 {
		t.Fatalf("after the lease ended: %+v", second)
	}
	if err := b1.Ack(ctxT(t), first.Receipt); !errors.Is(err, ErrStaleReceipt) {
		t.Fatalf("ack by the dead session's receipt: %v", err)
	}
	// Reserving under a lease that is gone fails and takes nothing.
	mustEnqueue(t, b1, q, "y")
	if _, err := b1.Reserve(ctxT(t), q, WithSession(func() clientv3.LeaseID { return lease.ID })); !errors.Is(err, ErrSessionEnded) {
		t.Fatalf("reserve under a revoked lease: %v, want ErrSessionEnded", err)
	}
	if d := mustReserve(t, b2, q); string(d.Payload) != "y" || d.Deliveries != 1 {
		t.Fatalf("after the failed reserve: %+v", d)
	}
}

func TestMaxDeliveriesMovesToDeadLetters(t *testing.T) {
	b, q := newBroker(t, "a"), queueName(t)
	id := mustEnqueue(t, b, q, "poison")
	mustEnqueue(t, b, q, "fine")
	for i := 1; i <= 2; i++ {
		d := mustReserve(t, b, q, WithMaxDeliveries(2))
		if d.ID != id || d.Deliveries != i {
			t.Fatalf("delivery %d: %+v", i, d)
		}
		if err := b.Nack(ctxT(t), d.Receipt, 0); err != nil {
			t.Fatal(err)
		}
	}
	// The third reserve buries the poison message and hands out the next.
	d := mustReserve(t, b, q, WithMaxDeliveries(2))
	if string(d.Payload) != "fine" {
		t.Fatalf("after burial got %q", d.Payload)
	}
	dead, more, err := b.DeadLetters(ctxT(t), q, 10)
	if err != nil || more || len(dead) != 1 || dead[0].ID != id || string(dead[0].Payload) != "poison" || dead[0].Deliveries != 2 || dead[0].DeadReason == "" {
		t.Fatalf("dead letters: %+v more %v err %v", dead, more, err)
	}
	st, err := b.Stats(ctxT(t), q)
	if err != nil || st.Depth != 1 || st.InFlight != 1 || st.Dead != 1 {
		t.Fatalf("stats: %+v %v", st, err)
	}
}

func TestDedup(t *testing.T) {
	b1, b2, q := newBroker(t, "a"), newBroker(t, "b"), queueName(t)
	id := mustEnqueue(t, b1, q, "x", WithDedup("job-1", time.Minute))
	for _, b := range []*Broker{b1, b2} {
		got, dup, err := b.Enqueue(ctxT(t), q, []byte("x again"), WithDedup("job-1", time.Minute))
		if err != nil || !dup || got != id {
			t.Fatalf("second enqueue of job-1: id %s dup %v err %v, want id %s dup", got, dup, err, id)
		}
	}
	// Concurrent enqueues of one new id: one message.
	var wg sync.WaitGroup
	ids := make([]string, 10)
	for i := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ids[i], _, _ = []*Broker{b1, b2}[i%2].Enqueue(ctxT(t), q, []byte("y"), WithDedup("job-2", time.Minute))
		}()
	}
	wg.Wait()
	for _, got := range ids {
		if got != ids[0] || got == "" {
			t.Fatalf("concurrent enqueues of job-2 answered ids %v", ids)
		}
	}
	if st, _ := b1.Stats(ctxT(t), q); st.Depth != 2 {
		t.Fatalf("depth %d, want 2", st.Depth)
	}
}

func TestDelayAndNackDelay(t *testing.T) {
	b, q := newBroker(t, "a"), queueName(t)
	enqueued := time.Now()
	mustEnqueue(t, b, q, "later", WithDelay(300*time.Millisecond))
	if _, err := b.Reserve(ctxT(t), q); !errors.Is(err, ErrEmpty) {
		t.Fatalf("delayed message handed out early: %v", err)
	}
	if st, _ := b.Stats(ctxT(t), q); st.Delayed != 1 || st.Ready != 0 {
		t.Fatalf("stats of a delayed message: %+v", st)
	}
	d := mustReserve(t, b, q, WithWait(10*time.Second)) // wakes on the not-before time
	// A lower bound only: the not-before time is at least 300 ms after
	// enqueued, so a handout before it is early whatever the machine's load.
	if waited := time.Since(enqueued); string(d.Payload) != "later" || waited < 300*time.Millisecond {
		t.Fatalf("got %q %v after the enqueue, want \"later\" no sooner than its 300ms delay", d.Payload, waited)
	}
	if err := b.Nack(ctxT(t), d.Receipt, 300*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Reserve(ctxT(t), q); !errors.Is(err, ErrEmpty) {
		t.Fatalf("nacked message with a delay handed out at once: %v", err)
	}
	d = mustReserve(t, b, q, WithWait(10*time.Second))
	if d.Deliveries != 2 {
		t.Fatalf("after nack: %+v", d)
	}
}

func TestExtendKeepsTheReceipt(t *testing.T) {
	b1, b2, q := newBroker(t, "a"), newBroker(t, "b"), queueName(t)
	mustEnqueue(t, b1, q, "x")
	d := mustReserve(t, b1, q, WithVisibility(200*time.Millisecond))
	deadline, err := b1.Extend(ctxT(t), d.Receipt, time.Hour)
	if err != nil || !deadline.After(time.Now().Add(50*time.Minute)) {
		t.Fatalf("extend: %v %v", deadline, err)
	}
	// Once the original deadline has passed, the message is still held.
	v, err := b2.acquire(q)
	if err != nil {
		t.Fatal(err)
	}
	defer b2.release(v)
	if err := v.waitLoaded(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	<-time.After(time.Until(d.Deadline))
	if _, err := b2.Reserve(ctxT(t), q); !errors.Is(err, ErrEmpty) {
		t.Fatalf("reserve of an extended message: %v", err)
	}
	if err := b1.Ack(ctxT(t), d.Receipt); err != nil {
		t.Fatalf("ack after extend: %v", err)
	}
}

func TestWait(t *testing.T) {
	b1, b2, q := newBroker(t, "a"), newBroker(t, "b"), queueName(t)
	done := make(chan int, 1)
	go func() {
		n, err := b1.Wait(ctxT(t), q, 3)
		if err != nil {
			t.Error(err)
		}
		done <- n
	}()
	for i := range 3 {
		select {
		case n := <-done:
			t.Fatalf("wait returned %d after %d messages", n, i)
		default:
		}
		mustEnqueue(t, b2, q, "x")
	}
	if n := <-done; n < 3 {
		t.Fatalf("wait returned %d", n)
	}
}

func TestValidation(t *testing.T) {
	b := newBroker(t, "a")
	ctx := ctxT(t)
	cases := []struct {
		field string
		err   error
	}{
		{"queue", func() error { _, _, err := b.Enqueue(ctx, "", nil); return err }()},
		{"queue", func() error { _, _, err := b.Enqueue(ctx, "a/b", nil); return err }()},
		{"payload", func() error { _, _, err := b.Enqueue(ctx, "q", make([]byte, MaxPayload+1)); return err }()},
		{"delay", func() error { _, _, err := b.Enqueue(ctx, "q", nil, WithDelay(25*time.Hour)); return err }()},
		{"dedup_window", func() error { _, _, err := b.Enqueue(ctx, "q", nil, WithDedup("d", 0)); return err }()},
		{"visibility", func() error { _, err := b.Reserve(ctx, "q", WithVisibility(0)); return err }()},
		{"visibility", func() error { _, err := b.Reserve(ctx, "q", WithVisibility(25*time.Hour)); return err }()},
		{"wait", func() error { _, err := b.Reserve(ctx, "q", WithWait(-time.Second)); return err }()},
		{"max_deliveries", func() error { _, err := b.Reserve(ctx, "q", WithMaxDeliveries(0)); return err }()},
		{"count", func() error { _, err := b.Wait(ctx, "q", 0); return err }()},
		{"receipt", func() error { _, err := ParseReceipt("q/abc/1"); return err }()},
		{"receipt", func() error { _, err := ParseReceipt("a/b/1/2"); return err }()},
	}
	for i, c := range cases {
		var fe *FieldError
		if !errors.As(c.err, &fe) || fe.Field != c.field {
			t.Errorf("case %d: %v, want a FieldError on %s", i, c.err, c.field)
		}
	}
}

func TestReceiptRoundTrip(t *testing.T) {
	r := Receipt{Queue: "jobs.v2", Seq: 42, Rev: 1234, Key: newReceiptKey()}
	got, err := ParseReceipt(r.String())
	if err != nil || got != r {
		t.Fatalf("ParseReceipt(%q) = %+v, %v", r.String(), got, err)
	}
}

// The key layout is what README.md says, readable with etcdctl.
func TestKeyLayout(t *testing.T) {
	b, q := newBroker(t, "a"), queueName(t)
	mustEnqueue(t, b, q, "x", WithDedup("d1", time.Minute))
	d := mustReserve(t, b, q)
	resp, err := b.cli.Get(ctxT(t), "/beacon/queues/"+q+"/", clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, kv := range resp.Kvs {
		got = append(got, string(kv.Key[len("/beacon/queues/"+q+"/"):]))
	}
	seq := fmt.Sprintf("%020d", d.Receipt.Seq)
	want := []string{"body/" + seq, "dedup/d1", "msg/" + seq, "res/" + seq, "seq"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("keys %v, want %v", got, want)
	}
	if strconv.FormatUint(d.Receipt.Seq, 10) != d.ID {
		t.Fatalf("id %s, seq %d", d.ID, d.Receipt.Seq)
	}
}

// A consumer loop that acks within its next Reserve: one transaction per
// message, the same outcome as Ack then Reserve.
func TestReserveWithAck(t *testing.T) {
	b, q := newBroker(t, "a"), queueName(t)
	for i := range 3 {
		mustEnqueue(t, b, q, fmt.Sprint("m", i))
	}
	d0 := mustReserve(t, b, q)
	d1 := mustReserve(t, b, q, WithAck(d0.Receipt))
	if string(d1.Payload) != "m1" {
		t.Fatalf("got %q", d1.Payload)
	}
	if err := b.Ack(ctxT(t), d0.Receipt); !errors.Is(err, ErrStaleReceipt) {
		t.Fatalf("d0 not acked by the reserve: %v", err)
	}
	// A stale ack_receipt reserves nothing.
	if _, err := b.Reserve(ctxT(t), q, WithAck(d0.Receipt)); !errors.Is(err, ErrStaleReceipt) {
		t.Fatalf("reserve with a stale ack_receipt: %v", err)
	}
	if st, _ := b.Stats(ctxT(t), q); st.Depth != 2 || st.InFlight != 1 {
		t.Fatalf("after the refused reserve: %+v", st)
	}
	d2 := mustReserve(t, b, q, WithAck(d1.Receipt))
	// Nothing left: the ack is made anyway, before answering empty.
	if _, err := b.Reserve(ctxT(t), q, WithAck(d2.Receipt)); !errors.Is(err, ErrEmpty) {
		t.Fatalf("reserve from an empty queue: %v", err)
	}
	if st, _ := b.Stats(ctxT(t), q); st.Depth != 0 {
		t.Fatalf("after acking within an empty reserve: %+v", st)
	}
	if _, err := b.Reserve(ctxT(t), q, WithAck(Receipt{Queue: "other", Seq: 1, Rev: 1})); err == nil {
		t.Fatal("an ack_receipt of another queue was accepted")
	}
}
