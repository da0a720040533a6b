package queue

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// bury enqueues payloads and makes each a dead letter (max deliveries 1:
// reserved and nacked once, buried by the next reserve). It returns their
// ids, oldest first.
func bury(t *testing.T, b *Broker, q string, payloads ...string) []string {
	t.Helper()
	var ids []string
	for _, p := range payloads {
		ids = append(ids, mustEnqueue(t, b, q, p))
	}
	for range payloads {
		d := mustReserve(t, b, q, WithMaxDeliveries(1))
		if err := b.Nack(ctxT(t), d.Receipt, 0); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := b.Reserve(ctxT(t), q, WithMaxDeliveries(1), WithWait(0)); !errors.Is(err, ErrEmpty) {
		t.Fatalf("reserve after burying all: %v", err)
	}
	dead, _, err := b.DeadLetters(ctxT(t), q, 100)
	if err != nil || len(dead) != len(payloads) {
		t.Fatalf("dead letters: %d, %v", len(dead), err)
	}
	return ids
}

// TestRedrive: a redriven dead letter is ready again, first in line before
// messages enqueued after it died, with its payload and its deliveries
// reset; unknown ids are reported, not redriven.
func TestRedrive(t *testing.T) {
	b, q := newBroker(t, "a"), queueName(t)
	ids := bury(t, b, q, "d1", "d2", "d3")
	later := mustEnqueue(t, b, q, "later")

	done, notDead, _, err := b.HandleDead(ctxT(t), q, Redrive, []string{ids[1], "999999", "0" + ids[1]}, false)
	if err != nil || !slices.Equal(done, []string{ids[1]}) || !slices.Equal(notDead, []string{"999999"}) {
		t.Fatalf("redrive: done %v, not dead %v, %v", done, notDead, err)
	}
	d := mustReserve(t, b, q)
	if d.ID != ids[1] || string(d.Payload) != "d2" || d.Deliveries != 1 {
		t.Fatalf("first after redrive: id %s payload %q deliveries %d", d.ID, d.Payload, d.Deliveries)
	}
	if err := b.Ack(ctxT(t), d.Receipt); err != nil {
		t.Fatal(err)
	}
	// Redriven twice: the second time it is no dead letter.
	if done, notDead, _, err := b.HandleDead(ctxT(t), q, Redrive, []string{ids[1]}, false); err != nil || len(done) != 0 || len(notDead) != 1 {
		t.Fatalf("redrive again: %v %v %v", done, notDead, err)
	}
	// All the rest, oldest first in line.
	if done, _, _, err := b.HandleDead(ctxT(t), q, Redrive, nil, true); err != nil || !slices.Equal(done, []string{ids[0], ids[2]}) {
		t.Fatalf("redrive all: %v %v", done, err)
	}
	for _, want := range []string{ids[0], ids[2], later} {
		d := mustReserve(t, b, q)
		if d.ID != want {
			t.Fatalf("got %s, want %s", d.ID, want)
		}
		if err := b.Ack(ctxT(t), d.Receipt); err != nil {
			t.Fatal(err)
		}
	}
	if st, err := b.Stats(ctxT(t), q); err != nil || st.Depth != 0 || st.Dead != 0 {
		t.Fatalf("stats at the end: %+v %v", st, err)
	}
}

// TestPurgeDead: purged dead letters are gone with their payloads; the
// queue's live messages are untouched.
func TestPurgeDead(t *testing.T) {
	b, q := newBroker(t, "a"), queueName(t)
	ids := bury(t, b, q, "x", "y")
	live := mustEnqueue(t, b, q, "live")
	done, _, _, err := b.HandleDead(ctxT(t), q, Purge, nil, true)
	if err != nil || !slices.Equal(done, ids) {
		t.Fatalf("purge all: %v %v", done, err)
	}
	resp, err := b.cli.Get(ctxT(t), b.keys(q).root+"body/", clientv3.WithPrefix())
	if err != nil || len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "live" {
		t.Fatalf("payloads left: %d, %v", len(resp.Kvs), err)
	}
	if d := mustReserve(t, b, q); d.ID != live {
		t.Fatalf("live message: %s", d.ID)
	}
}

// TestRedriveAndPurgeRace: two operators, one redriving and one purging
// every dead letter at once: each letter ends one way, whole (a message
// with its payload, or nothing at all).
func TestRedriveAndPurgeRace(t *testing.T) {
	b1, b2, q := newBroker(t, "a"), newBroker(t, "b"), queueName(t)
	ids := plantDead(t, b1, q, 1, 400)
	var redriven, purged []string
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		redriven, _, _, _ = b1.HandleDead(ctxT(t), q, Redrive, nil, true)
	}()
	go func() {
		defer wg.Done()
		purged, _, _, _ = b2.HandleDead(ctxT(t), q, Purge, nil, true)
	}()
	wg.Wait()
	all := append(slices.Clone(redriven), purged...)
	slices.Sort(all)
	want := slices.Clone(ids)
	slices.Sort(want)
	if !slices.Equal(all, want) {
		t.Fatalf("redriven %d + purged %d: %v, want each of %d once", len(redriven), len(purged), all, len(ids))
	}
	for range redriven {
		d := mustReserve(t, b1, q)
		if !slices.Contains(redriven, d.ID) || d.Payload == nil {
			t.Fatalf("reserved %s (payload %q), not a redriven one", d.ID, d.Payload)
		}
		if err := b1.Ack(ctxT(t), d.Receipt); err != nil {
			t.Fatal(err)
		}
	}
	st, err := b1.Stats(ctxT(t), q)
	if err != nil || st.Depth != 0 || st.Dead != 0 {
		t.Fatalf("stats: %+v %v", st, err)
	}
	resp, err := b1.cli.Get(ctxT(t), b1.keys(q).root+"body/", clientv3.WithPrefix())
	if err != nil || len(resp.Kvs) != 0 {
		t.Fatalf("payloads left: %d, %v", len(resp.Kvs), err)
	}
}

func TestHandleDeadValidation(t *testing.T) {
	b, q := newBroker(t, "a"), queueName(t)
	for _, c := range []struct {
		ids []string
		all bool
	}{{nil, false}, {[]string{"1"}, true}, {[]string{"x"}, false}, {[]string{"0"}, false}} {
		var fe *FieldError
		if _, _, _, err := b.HandleDead(ctxT(t), q, Redrive, c.ids, c.all); !errors.As(err, &fe) || fe.Field != "ids" {
			t.Errorf("ids %v all %v: %v", c.ids, c.all, err)
		}
	}
	var fe *FieldError
	if _, _, _, err := b.HandleDead(ctxT(t), "a/b", Purge, nil, true); !errors.As(err, &fe) {
		t.Errorf("bad queue name: %v", err)
	}
}

// plantDead writes n dead letters from sequence number first on, as
// Reserve buries them, straight to etcd (burying thousands one by one
// would take long); it returns their ids.
func plantDead(t *testing.T, b *Broker, q string, first, n int) []string {
	t.Helper()
	k := b.keys(q)
	var ids []string
	for i := 0; i < n; i += 50 {
		var ops []clientv3.Op
		for seq := uint64(first + i); seq < uint64(first+min(i+50, n)); seq++ {
			d := deadRecord{meta: meta{Enqueued: time.Now().UnixNano(), Deliveries: 5}, Died: time.Now().UnixNano(), Reason: "planted"}
			ops = append(ops, clientv3.OpPut(k.dead(seq), encode(d)), clientv3.OpPut(k.body(seq), fmt.Sprint("p", seq)))
			ids = append(ids, strconv.FormatUint(seq, 10))
		}
		if _, err := b.cli.Txn(ctxT(t)).Then(ops...).Commit(); err != nil {
			t.Fatal(err)
		}
	}
	return ids
}

// TestHandleDeadBatches: "all" handles at most MaxDeadBatch letters a
// call and says more remain; ids are bounded the same way.
func TestHandleDeadBatches(t *testing.T) {
	b, q := newBroker(t, "a"), queueName(t)
	plantDead(t, b, q, 1, MaxDeadBatch+200)
	done, _, more, err := b.HandleDead(ctxT(t), q, Purge, nil, true)
	if err != nil || len(done) != MaxDeadBatch || !more {
		t.Fatalf("first call: %d done, more %v, %v", len(done), more, err)
	}
	done, _, more, err = b.HandleDead(ctxT(t), q, Purge, nil, true)
	if err != nil || len(done) != 200 || more {
		t.Fatalf("second call: %d done, more %v, %v", len(done), more, err)
	}
	if st, err := b.Stats(ctxT(t), q); err != nil || st.Dead != 0 {
		t.Fatalf("stats: %+v %v", st, err)
	}
	many := make([]string, MaxDeadBatch+1)
	for i := range many {
		many[i] = strconv.Itoa(i + 1)
	}
	var fe *FieldError
	if _, _, _, err := b.HandleDead(ctxT(t), q, Redrive, many, false); !errors.As(err, &fe) || fe.Field != "ids" {
		t.Fatalf("%d ids: %v", len(many), err)
	}
}

// TestUnreadableDeadLetter: a dead record that does not decode is listed
// (so that listing and Stats agree), is not redriven (its metadata is
// lost), and is purged.
func TestUnreadableDeadLetter(t *testing.T) {
	b, q := newBroker(t, "a"), queueName(t)
	ids := plantDead(t, b, q, 1, 2)
	if _, err := b.cli.Put(ctxT(t), b.keys(q).dead(2), "{garbage"); err != nil {
		t.Fatal(err)
	}
	dead, _, err := b.DeadLetters(ctxT(t), q, 10)
	if err != nil || len(dead) != 2 || !strings.Contains(dead[1].DeadReason, "unreadable") {
		t.Fatalf("listed: %+v %v", dead, err)
	}
	done, notDead, _, err := b.HandleDead(ctxT(t), q, Redrive, ids, false)
	if err != nil || !slices.Equal(done, ids[:1]) || !slices.Equal(notDead, ids[1:]) {
		t.Fatalf("redrive: done %v, not dead %v, %v", done, notDead, err)
	}
	if done, _, _, err := b.HandleDead(ctxT(t), q, Redrive, nil, true); err != nil || len(done) != 0 {
		t.Fatalf("redrive all: %v %v", done, err)
	}
	if done, _, _, err := b.HandleDead(ctxT(t), q, Purge, nil, true); err != nil || !slices.Equal(done, ids[1:]) {
		t.Fatalf("purge all: %v %v", done, err)
	}
	var fe *FieldError
	if _, _, _, err := b.HandleDead(ctxT(t), q, DeadAction(7), nil, true); !errors.As(err, &fe) || fe.Field != "action" {
		t.Fatalf("action 7: %v", err)
	}
}
