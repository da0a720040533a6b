package queue

import (
	"context"
	"errors"
	"fmt"
	"github.com/beaconhq/beacon/dataquota"
	"go.etcd.io/etcd/api/v3/etcdserverpb"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

func mustGate(t *testing.T, b *Broker, q string, c GateCondition) *Gate {
	t.Helper()
	g, err := b.SetGate(ctxT(t), q, c)
	if err != nil {
		t.Fatalf("gate %+v: %v", c, err)
	}
	return g
}

func wantEmpty(t *testing.T, b *Broker, q, why string) {
	t.Helper()
	if d, err := b.Reserve(ctxT(t), q); !errors.Is(err, ErrEmpty) {
		t.Fatalf("%s: reserve answered %+v, %v; want ErrEmpty", why, d, err)
	}
}

// Scenario (a) on two agents: a Count gate holds every reserve until the
// count of ready messages (WithLast ones not counted) is reached; then
// the small ones go in push order and the last one after all are acked.
func TestGateCountAndLast(t *testing.T) {
	b1, b2, q := newBroker(t, "a"), newBroker(t, "b"), queueName(t)
	mustGate(t, b1, q, GateCondition{Count: 3})
	big := mustEnqueue(t, b1, q, "big", WithLast())
	var small []string
	for i := range 2 {
		small = append(small, mustEnqueue(t, b2, q, fmt.Sprint("small", i)))
	}
	// Views on both agents, waiting: neither may reserve yet.
	for _, b := range []*Broker{b1, b2} {
		if d, err := b.Reserve(ctxT(t), q, WithWait(300*time.Millisecond)); !errors.Is(err, ErrEmpty) || !strings.Contains(err.Error(), "gate is closed, count 3") {
			t.Fatalf("reserve before the count: %+v, %v", d, err)
		}
	}
	small = append(small, mustEnqueue(t, b1, q, "small2"))
	var got []*Delivery
	for i := range 3 {
		d := mustReserve(t, []*Broker{b2, b1}[i%2], q, WithWait(10*time.Second))
		got = append(got, d)
		if d.ID != small[i] {
			t.Fatalf("delivery %d is %s %q, want %s", i, d.ID, d.Payload, small[i])
		}
	}
	if g, err := b2.GetGate(ctxT(t), q); err != nil || g == nil || !g.Open || g.Condition.Count != 3 {
		t.Fatalf("gate after the count: %+v %v", g, err)
	}
	// Pushed after the big one, still before it.
	late := mustEnqueue(t, b2, q, "late")
	d := mustReserve(t, b2, q, WithWait(10*time.Second))
	if d.ID != late {
		t.Fatalf("got %s %q, want the late one %s", d.ID, d.Payload, late)
	}
	for _, d := range append(got, d) {
		wantEmpty(t, b1, q, "the last message while others are left")
		if err := b1.Ack(ctxT(t), d.Receipt); err != nil {
			t.Fatal(err)
		}
	}
	if d := mustReserve(t, b1, q, WithWait(10*time.Second)); d.ID != big || !d.Last {
		t.Fatalf("got %+v, want the last one %s", d, big)
	}
}

// Scenario (b): an After gate hands out its message alone; the gate stays
// closed through a redelivery and opens in the ack's transaction.
func TestGateAfter(t *testing.T) {
	b1, b2, q := newBroker(t, "a"), newBroker(t, "b"), queueName(t)
	other := mustEnqueue(t, b1, q, "other")
	first := mustEnqueue(t, b1, q, "first")
	mustGate(t, b1, q, GateCondition{After: first})
	lease, err := b1.cli.Grant(ctxT(t), 60)
	if err != nil {
		t.Fatal(err)
	}
	d := mustReserve(t, b1, q, WithSession(func() clientv3.LeaseID { return lease.ID }))
	if d.ID != first {
		t.Fatalf("got %s, want the first task %s", d.ID, first)
	}
	if d, err := b2.Reserve(ctxT(t), q, WithWait(300*time.Millisecond)); !errors.Is(err, ErrEmpty) {
		t.Fatalf("reserve while the first task runs: %+v, %v", d, err)
	}
	// Its worker dies: it comes back, the gate stays closed.
	if _, err := b1.cli.Revoke(ctxT(t), lease.ID); err != nil {
		t.Fatal(err)
	}
	d = mustReserve(t, b2, q, WithWait(10*time.Second))
	if d.ID != first || d.Deliveries != 2 {
		t.Fatalf("redelivery: %+v", d)
	}
	if g, _ := b1.GetGate(ctxT(t), q); g == nil || g.Open {
		t.Fatalf("gate after the redelivery: %+v", g)
	}
	wantEmpty(t, b1, q, "the first task redelivered and not acked")
	// Acked within the next Reserve: that call waits for the gate its ack
	// opens and gets the next message.
	if d := mustReserve(t, b2, q, WithAck(d.Receipt), WithWait(10*time.Second)); d.ID != other {
		t.Fatalf("after the gate opened: %+v", d)
	}
	if g, _ := b1.GetGate(ctxT(t), q); g == nil || !g.Open {
		t.Fatalf("gate after the first task's ack: %+v", g)
	}
	if _, err := b1.SetGate(ctxT(t), q, GateCondition{After: first}); !errors.Is(err, ErrNoMessage) {
		t.Fatalf("gate after an acked message: %v, want ErrNoMessage", err)
	}
}

// Scenario (c): a Key gate opens when the config key gets its value, and
// a consumer waiting on another agent gets the message.
func TestGateKey(t *testing.T) {
	b1, b2, q := newBroker(t, "a"), newBroker(t, "b"), queueName(t)
	key := "gates/" + q
	mustGate(t, b1, q, GateCondition{Key: key, Value: []byte("go"), HasValue: true})
	id := mustEnqueue(t, b1, q, "x")
	got := make(chan *Delivery, 1)
	go func() {
		d, err := b2.Reserve(ctxT(t), q, WithWait(20*time.Second))
		if err != nil {
			t.Error(err)
		}
		got <- d
	}()
	put, err := b1.cli.Put(ctxT(t), "/beacon/config/"+key, "wait")
	if err != nil {
		t.Fatal(err)
	}
	// Until b2's view has read the key at that value; then its opener
	// must not find the condition met (the wait below alone would pass
	// with a view that had not looked yet).
	v, err := b2.acquire(q)
	if err != nil {
		t.Fatal(err)
	}
	defer b2.release(v)
	for end := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		v.mu.Lock()
		seen := v.cfg.key == key && v.cfg.mod >= put.Header.Revision
		_, _, _, met, _ := v.gateMet(time.Now().UnixNano())
		v.mu.Unlock()
		if seen && met {
			t.Fatal("the gate's condition holds with the key at another value")
		}
		if seen {
			break
		}
		if time.Now().After(end) {
			t.Fatal("b2's view has not read the key in 10 s")
		}
	}
	select {
	case d := <-got:
		t.Fatalf("reserved %+v with the key at another value", d)
	case <-time.After(300 * time.Millisecond):
	}
	if _, err := b1.cli.Put(ctxT(t), "/beacon/config/"+key, "go"); err != nil {
		t.Fatal(err)
	}
	if d := <-got; d == nil || d.ID != id {
		t.Fatalf("after the key flipped: %+v", d)
	}
}

// The reserve transaction itself compares the gate: a view that has not
// yet seen the gate close cannot reserve, and one that has not seen a
// new message cannot hand out a WithLast one.
func TestStaleViewCannotReserve(t *testing.T) {
	b1, b2, q := newBroker(t, "a"), newBroker(t, "b"), queueName(t)
	mustEnqueue(t, b1, q, "x")
	staleTry := func(change func()) *Delivery {
		t.Helper()
		v, err := b1.acquire(q)
		if err != nil {
			t.Fatal(err)
		}
		defer b1.release(v)
		if err := v.waitLoaded(ctxT(t)); err != nil {
			t.Fatal(err)
		}
		var c candidate
		for end := time.Now().Add(10 * time.Second); ; { // until the view has caught up
			v.mu.Lock()
			got, found, _ := v.pick(time.Now().UnixNano(), DefaultMaxDeliveries)
			changed := v.changed
			v.mu.Unlock()
			if found {
				c = got
				break
			}
			if time.Now().After(end) {
				t.Fatal("nothing to pick")
			}
			select {
			case <-changed:
			case <-time.After(100 * time.Millisecond):
			}
		}
		change() // after the pick: the view's picture is stale
		o := reserveOpts{visibility: time.Minute, maxDeliveries: DefaultMaxDeliveries, lease: func() clientv3.LeaseID { return clientv3.NoLease }}
		d, err := b1.try(ctxT(t), v.k, c, &o, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	if d := staleTry(func() { mustGate(t, b2, q, GateCondition{Close: true}) }); d != nil {
		t.Fatalf("reserved %+v under a gate closed after the pick", d)
	}
	mustGate(t, b2, q, GateCondition{Open: true})
	d := mustReserve(t, b1, q, WithWait(10*time.Second))
	if err := b1.Ack(ctxT(t), d.Receipt); err != nil {
		t.Fatal(err)
	}
	mustEnqueue(t, b1, q, "big", WithLast())
	if d := staleTry(func() { mustEnqueue(t, b2, q, "pushed after the pick") }); d != nil {
		t.Fatalf("reserved the last message %+v with another pushed after the pick", d)
	}
}

func TestGateRefusals(t *testing.T) {
	b, q := newBroker(t, "a"), queueName(t)
	last := mustEnqueue(t, b, q, "big", WithLast())
	for _, tc := range []struct {
		c     GateCondition
		field string
	}{
		{GateCondition{}, "condition"},
		{GateCondition{Count: 2, Close: true}, "condition"},
		{GateCondition{Count: -1}, "count"},
		{GateCondition{After: "x"}, "after"},
		{GateCondition{After: last}, "after"},
		{GateCondition{Key: "/abs"}, "key"},
	} {
		_, err := b.SetGate(ctxT(t), q, tc.c)
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Field != tc.field {
			t.Errorf("gate %+v: %v, want a %s error", tc.c, err, tc.field)
		}
	}
	if _, err := b.SetGate(ctxT(t), q, GateCondition{After: "999999"}); !errors.Is(err, ErrNoMessage) {
		t.Errorf("after an unknown id: %v", err)
	}
}

// A delayed message counts once its delay has passed: the opener wakes
// for it by itself, with no event to wake it.
func TestGateCountWaitsForDelay(t *testing.T) {
	b1, b2, q := newBroker(t, "a"), newBroker(t, "b"), queueName(t)
	mustGate(t, b1, q, GateCondition{Count: 2})
	first := mustEnqueue(t, b1, q, "now")
	mustEnqueue(t, b1, q, "soon", WithDelay(500*time.Millisecond))
	wantEmpty(t, b2, q, "one ready, one delayed")
	if d := mustReserve(t, b2, q, WithWait(10*time.Second)); d.ID != first {
		t.Fatalf("after the delay: %+v", d)
	}
}

// TestKeyGateWithALargeValueOpens: a key gate may wait for a config value
// of up to 1 MiB. Its opening compares that value; had it also rewritten
// it into the open record (base64 in JSON), the transaction would pass
// etcd's 1.5 MiB request limit and the gate could never open (a review
// found Reserve answering Internal "request is too large" forever).
func TestKeyGateWithALargeValueOpens(t *testing.T) {
	b, q := newBroker(t, "a"), queueName(t)
	key := "gates/" + q
	value := strings.Repeat("v", 1<<20)
	mustGate(t, b, q, GateCondition{Key: key, Value: []byte(value), HasValue: true})
	mustEnqueue(t, b, q, "x")
	if _, err := b.cli.Put(ctxT(t), "/beacon/config/"+key, value); err != nil {
		t.Fatal(err)
	}
	d, err := b.Reserve(ctxT(t), q, WithWait(20*time.Second))
	if err != nil {
		t.Fatalf("reserve behind a key gate whose 1 MiB value holds: %v", err)
	}
	if string(d.Payload) != "x" {
		t.Fatalf("delivered %q", d.Payload)
	}
	g, err := b.GetGate(ctxT(t), q)
	if err != nil || !g.Open || g.Condition.Key != key {
		t.Fatalf("the gate after opening: %+v %v, want open on key %s", g, err, key)
	}
}

// TestGateOpeningIsTheClients: the view's opener opens a gate on behalf
// of the client that set it, and the data quota judges it so: past the
// client line the gate stays closed (a review filled etcd to its alarm
// with a thousand gates that the agent opened on its own account); below
// it, it opens.
func TestGateOpeningIsTheClients(t *testing.T) {
	var inUse atomic.Int64
	const quota = 64 << 20
	g, err := dataquota.New(50, dataquota.WithClientPercent(80))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	var readings atomic.Int64
	go g.Run(ctx, func(context.Context) (*etcdserverpb.StatusResponse, error) {
		defer readings.Add(1)
		return &etcdserverpb.StatusResponse{DbSizeInUse: inUse.Load(), DbSize: inUse.Load(), DbSizeQuota: quota}, nil
	}, 10*time.Millisecond)
	// read waits until the guard has taken a reading begun after now.
	read := func() {
		t.Helper()
		from := readings.Load()
		for end := time.Now().Add(5 * time.Second); readings.Load() < from+2; time.Sleep(time.Millisecond) {
			if time.Now().After(end) {
				t.Fatal("the guard took no reading in 5 s")
			}
		}
	}
	raw := newClient(t)
	b := New(g.Client(raw), "/beacon/", WithNode("a"))
	t.Cleanup(func() { b.Close() })
	q := queueName(t)
	key := "gates/" + q
	mustGate(t, b, q, GateCondition{Key: key})
	mustEnqueue(t, b, q, "x")

	inUse.Store(quota - 10<<20) // past the client line (80 %)
	read()
	if _, err := raw.Put(ctxT(t), "/beacon/config/"+key, "go"); err != nil {
		t.Fatal(err)
	}
	if d, err := b.Reserve(ctxT(t), q, WithWait(time.Second)); err == nil {
		t.Fatalf("delivered %q past the client line: the gate was opened on the agent's account", d.Payload)
	}
	if gt, err := b.GetGate(ctxT(t), q); err != nil || gt.Open {
		t.Fatalf("the gate past the client line: %+v %v, want closed", gt, err)
	}
	inUse.Store(0)
	read()
	d, err := b.Reserve(ctxT(t), q, WithWait(10*time.Second))
	if err != nil || string(d.Payload) != "x" {
		t.Fatalf("below the line: %v %v, want x delivered", d, err)
	}
}
