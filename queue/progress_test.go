package queue

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/beaconhq/beacon/internal/rpcerr"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// inFlightOf is the listing entry of message id, or nil.
func inFlightOf(t *testing.T, b *Broker, q, id string) *InFlight {
	t.Helper()
	st, err := b.Stats(ctxT(t), q, WithInFlight())
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range st.InFlightMessages {
		if f.ID == id {
			return &f
		}
	}
	return nil
}

// statusKeys counts the queue's progress records in etcd.
func statusKeys(t *testing.T, b *Broker, q string) int64 {
	t.Helper()
	resp, err := b.cli.Get(ctxT(t), b.keys(q).statusPrefix(), clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		t.Fatal(err)
	}
	return resp.Count
}

// A report is listed with the worker's node, pid and reservation time,
// replaced by the next one, and goes with the reservation's lease: the
// message is ready again and the record gone from etcd.
func TestProgressGoesWithTheSession(t *testing.T) {
	b, q := newBroker(t, "host-7"), queueName(t)
	mustEnqueue(t, b, q, "x")
	lease, err := b.cli.Grant(ctxT(t), 60)
	if err != nil {
		t.Fatal(err)
	}
	before := time.Now()
	d := mustReserve(t, b, q, WithSession(func() clientv3.LeaseID { return lease.ID }), WithWorker(4242), WithVisibility(time.Hour))
	f := inFlightOf(t, b, q, d.ID)
	if f == nil || f.Node != "host-7" || f.Pid != 4242 || f.Deliveries != 1 || f.Progress != nil ||
		f.Reserved.Before(before.Add(-time.Second)) || f.Reserved.After(time.Now()) {
		t.Fatalf("in flight before a report: %+v; want node host-7, pid 4242, reserved now, no progress", f)
	}
	for _, p := range []struct {
		pct int
		msg string
	}{{10, "dumping"}, {50, "copying"}, {90, ""}} {
		if err := b.Progress(ctxT(t), d.Receipt, p.pct, p.msg, InSession(lease.ID)); err != nil {
			t.Fatalf("progress %d: %v", p.pct, err)
		}
		if f := inFlightOf(t, b, q, d.ID); f == nil || f.Progress == nil || f.Progress.Percent != p.pct || f.Progress.Message != p.msg {
			t.Fatalf("after reporting %d %q: %+v", p.pct, p.msg, f)
		}
	}
	if _, err := b.cli.Revoke(ctxT(t), lease.ID); err != nil {
		t.Fatal(err)
	}
	if n := statusKeys(t, b, q); n != 0 {
		t.Errorf("%d progress records left after the session's lease ended", n)
	}
	st, err := b.Stats(ctxT(t), q, WithInFlight())
	if err != nil || st.Ready != 1 || len(st.InFlightMessages) != 0 {
		t.Fatalf("after the lease ended: %+v %v; want the message ready, nothing in flight", st, err)
	}
	if err := b.Progress(ctxT(t), d.Receipt, 95, "late"); !errors.Is(err, ErrStaleReceipt) || rpcerr.From(err) == nil ||
		status.Code(rpcerr.From(err)) != codes.FailedPrecondition {
		t.Fatalf("progress after the lease ended: %v; want ErrStaleReceipt (FAILED_PRECONDITION)", err)
	}
	if n := statusKeys(t, b, q); n != 0 {
		t.Errorf("a refused report wrote %d records", n)
	}
}

// A worker whose reservation expired and was taken by another cannot
// report over the new holder's progress; the new holder starts with none.
func TestProgressStaleWorkerRefused(t *testing.T) {
	b, q := newBroker(t, "a"), queueName(t)
	mustEnqueue(t, b, q, "x")
	old := mustReserve(t, b, q, WithVisibility(20*time.Millisecond))
	if err := b.Progress(ctxT(t), old.Receipt, 40, "old worker"); err != nil {
		t.Fatal(err)
	}
	var cur *Delivery
	deadline := time.Now().Add(10 * time.Second)
	for cur == nil {
		d, err := b.Reserve(ctxT(t), q, WithWait(time.Second), WithVisibility(time.Hour))
		if err == nil {
			cur = d
		} else if !errors.Is(err, ErrEmpty) || time.Now().After(deadline) {
			t.Fatalf("reserving the expired message: %v", err)
		}
	}
	if n := statusKeys(t, b, q); n != 0 {
		t.Errorf("reaping the expired reservation left %d progress records", n)
	}
	if f := inFlightOf(t, b, q, cur.ID); f == nil || f.Progress != nil || f.Deliveries != 2 {
		t.Fatalf("the new reservation: %+v; want no progress, 2 deliveries", f)
	}
	if err := b.Progress(ctxT(t), cur.Receipt, 70, "new worker"); err != nil {
		t.Fatal(err)
	}
	if err := b.Progress(ctxT(t), old.Receipt, 99, "old worker"); !errors.Is(err, ErrStaleReceipt) {
		t.Fatalf("the stale worker's report: %v; want ErrStaleReceipt", err)
	}
	if f := inFlightOf(t, b, q, cur.ID); f == nil || f.Progress == nil || f.Progress.Percent != 70 || f.Progress.Message != "new worker" {
		t.Fatalf("after the stale report: %+v; want the new worker's 70%%", f)
	}
}

// The write's compare, in the same transaction, refuses an old receipt
// once the message was reserved again, even where the claim before it
// (which may read a lagging view) let it through: checked here directly,
// since only a race between the claim and the write reaches it.
func TestProgressWriteComparesTheReservation(t *testing.T) {
	b, q := newBroker(t, "a"), queueName(t)
	mustEnqueue(t, b, q, "x")
	old := mustReserve(t, b, q, WithVisibility(time.Hour))
	if err := b.Nack(ctxT(t), old.Receipt, 0); err != nil {
		t.Fatal(err)
	}
	cur := mustReserve(t, b, q, WithVisibility(time.Hour))
	rec := progressRecord{Percent: 99, Message: "stale", At: time.Now().UnixNano(), Rev: old.Receipt.Rev}
	if err := b.putProgress(ctxT(t), b.keys(q), old.Receipt, clientv3.NoLease, rec); !errors.Is(err, ErrStaleReceipt) {
		t.Fatalf("a stale receipt's write: %v; want ErrStaleReceipt", err)
	}
	if n := statusKeys(t, b, q); n != 0 {
		t.Fatalf("the stale write left %d records", n)
	}
	rec.Rev = cur.Receipt.Rev
	if err := b.putProgress(ctxT(t), b.keys(q), cur.Receipt, clientv3.NoLease, rec); err != nil {
		t.Fatalf("the holder's write: %v", err)
	}
}

// A record of an earlier reservation of the message (as left by a crash
// between writes of an older agent) is not shown with a later one.
func TestProgressOfAnotherReservationHidden(t *testing.T) {
	b, q := newBroker(t, "a"), queueName(t)
	mustEnqueue(t, b, q, "x")
	d := mustReserve(t, b, q, WithVisibility(time.Hour))
	rec := progressRecord{Percent: 60, Message: "earlier", At: time.Now().UnixNano(), Rev: d.Receipt.Rev - 1}
	if _, err := b.cli.Put(ctxT(t), b.keys(q).status(d.Receipt.Seq), encode(rec)); err != nil {
		t.Fatal(err)
	}
	if f := inFlightOf(t, b, q, d.ID); f == nil || f.Progress != nil {
		t.Fatalf("in flight: %+v; want the earlier reservation's report hidden", f)
	}
}

// Ack, nack and a reserve that acks end the report with the reservation.
func TestProgressEndsWithTheReservation(t *testing.T) {
	b, q := newBroker(t, "a"), queueName(t)
	for _, p := range []string{"a", "b", "c", "d", "e"} {
		mustEnqueue(t, b, q, p)
	}
	for what, end := range map[string]func(*Delivery) error{
		"ack":  func(d *Delivery) error { return b.Ack(ctxT(t), d.Receipt) },
		"nack": func(d *Delivery) error { return b.Nack(ctxT(t), d.Receipt, time.Hour) },
		"reserve with ack": func(d *Delivery) error {
			next, err := b.Reserve(ctxT(t), q, WithAck(d.Receipt), WithVisibility(time.Hour))
			if err == nil {
				err = b.Nack(ctxT(t), next.Receipt, time.Hour)
			}
			return err
		},
	} {
		d := mustReserve(t, b, q, WithVisibility(time.Hour))
		if err := b.Progress(ctxT(t), d.Receipt, 30, what); err != nil {
			t.Fatal(err)
		}
		if err := end(d); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if n := statusKeys(t, b, q); n != 0 {
			t.Errorf("%s left %d progress records", what, n)
		}
	}
}

// Bad reports are refused naming the field; another session's report is
// refused as for Ack.
func TestProgressRefusals(t *testing.T) {
	b, q := newBroker(t, "a"), queueName(t)
	mustEnqueue(t, b, q, "x")
	mine, err := b.cli.Grant(ctxT(t), 60)
	if err != nil {
		t.Fatal(err)
	}
	theirs, err := b.cli.Grant(ctxT(t), 60)
	if err != nil {
		t.Fatal(err)
	}
	d := mustReserve(t, b, q, WithSession(func() clientv3.LeaseID { return mine.ID }), WithVisibility(time.Hour))
	for _, c := range []struct {
		pct   int
		msg   string
		field string
	}{{101, "", "percent"}, {-1, "", "percent"}, {50, strings.Repeat("x", MaxProgressMessage+1), "message"}, {50, "\xff", "message"}} {
		err := b.Progress(ctxT(t), d.Receipt, c.pct, c.msg)
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Field != c.field {
			t.Errorf("progress %d with a %d-byte message: %v; want a FieldError on %s", c.pct, len(c.msg), err, c.field)
		}
	}
	if err := b.Progress(ctxT(t), d.Receipt, 50, "", InSession(theirs.ID)); !errors.Is(err, ErrNotYours) {
		t.Errorf("another session's report: %v; want ErrNotYours", err)
	}
	if err := b.Progress(ctxT(t), d.Receipt, MaxProgressMessage/1024*100, strings.Repeat("y", MaxProgressMessage), InSession(mine.ID)); err != nil {
		t.Errorf("a report at the bounds: %v", err)
	}
}

// Reports are kept outside the range the views watch, so that a report
// wakes no Reserve waiting on the queue.
func TestProgressOutsideTheView(t *testing.T) {
	k := keys{queue: "q", root: "/beacon/queues/q/"}
	start, end := k.followRange() // what views watch; viewRange is only its msg/ and res/ part
	if s := k.status(1); s >= start && s < end {
		t.Fatalf("%s is inside the view's range [%s, %s)", s, start, end)
	}
}
