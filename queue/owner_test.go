package queue

import (
	"errors"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// A receipt with the right queue, sequence number and revision but
// another key is refused like a stale one by Ack, Nack, Extend and a
// Reserve's ack, and changes nothing; the true receipt still works. etcd
// keeps neither the key nor anything that names a session.
func TestGuessedReceiptRefused(t *testing.T) {
	b, q := newBroker(t, "a"), queueName(t)
	mustEnqueue(t, b, q, "x")
	mustEnqueue(t, b, q, "y")
	d := mustReserve(t, b, q, WithVisibility(time.Hour))
	if len(d.Receipt.Key) != 2*receiptKeyBytes || receiptKeyBytes < 16 {
		t.Fatalf("receipt key %q: want %d random bytes (at least 128 bits) in hex", d.Receipt.Key, receiptKeyBytes)
	}
	guess := d.Receipt
	guess.Key = strings.Repeat("0", 2*receiptKeyBytes)
	for what, call := range map[string]func() error{
		"ack":    func() error { return b.Ack(ctxT(t), guess) },
		"nack":   func() error { return b.Nack(ctxT(t), guess, 0) },
		"extend": func() error { _, err := b.Extend(ctxT(t), guess, time.Second); return err },
		"reserve with ack": func() error {
			_, err := b.Reserve(ctxT(t), q, WithAck(guess))
			return err
		},
	} {
		if err := call(); !errors.Is(err, ErrStaleReceipt) {
			t.Errorf("%s with a guessed receipt: %v, want ErrStaleReceipt", what, err)
		} else if strings.Contains(err.Error(), guess.Key) || strings.Contains(err.Error(), d.Receipt.Key) {
			t.Errorf("%s: the error shows a receipt key: %v", what, err)
		}
	}
	if st, _ := b.Stats(ctxT(t), q); st.InFlight != 1 || st.Ready != 1 {
		t.Fatalf("after the guesses: %+v; want the message still reserved", st)
	}
	// The three-part receipts of before are no receipts any more.
	if _, err := ParseReceipt(q + "/1/5"); err == nil {
		t.Error("a receipt without a key was parsed")
	}
	resp, err := b.cli.Get(ctxT(t), b.keys(q).res(d.Receipt.Seq))
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("reservation record: %v %v", resp, err)
	}
	if v := string(resp.Kvs[0].Value); strings.Contains(v, d.Receipt.Key) || strings.Contains(v, "session") {
		t.Errorf("the reservation record %s holds the receipt key or a session", v)
	}
	if err := b.Ack(ctxT(t), d.Receipt); err != nil {
		t.Fatalf("ack with the true receipt: %v", err)
	}
	d2 := mustReserve(t, b, q)
	if d2.Receipt.Key == d.Receipt.Key {
		t.Fatal("two reservations got the same receipt key")
	}
}

// A reservation made in a session answers only that session (or a call
// naming none, with the receipt); another session is refused even with
// the true receipt, and so is a session for a reservation made without
// one.
func TestReceiptBoundToSession(t *testing.T) {
	b, q := newBroker(t, "a"), queueName(t)
	for _, p := range []string{"a", "b", "c"} {
		mustEnqueue(t, b, q, p)
	}
	mine, err := b.cli.Grant(ctxT(t), 60)
	if err != nil {
		t.Fatal(err)
	}
	theirs, err := b.cli.Grant(ctxT(t), 60)
	if err != nil {
		t.Fatal(err)
	}
	d := mustReserve(t, b, q, WithSession(func() clientv3.LeaseID { return mine.ID }), WithVisibility(time.Hour))
	other := InSession(theirs.ID)
	for what, call := range map[string]func() error{
		"ack":    func() error { return b.Ack(ctxT(t), d.Receipt, other) },
		"nack":   func() error { return b.Nack(ctxT(t), d.Receipt, 0, other) },
		"extend": func() error { _, err := b.Extend(ctxT(t), d.Receipt, time.Second, other); return err },
		"reserve with ack": func() error {
			_, err := b.Reserve(ctxT(t), q, WithAck(d.Receipt), WithSession(func() clientv3.LeaseID { return theirs.ID }))
			return err
		},
	} {
		if err := call(); !errors.Is(err, ErrNotYours) {
			t.Errorf("%s by another session: %v, want ErrNotYours", what, err)
		}
	}
	if st, _ := b.Stats(ctxT(t), q); st.InFlight != 1 || st.Ready != 2 {
		t.Fatalf("after the refused calls: %+v", st)
	}
	if _, err := b.Extend(ctxT(t), d.Receipt, time.Hour, InSession(mine.ID)); err != nil {
		t.Fatalf("extend by its session: %v", err)
	}
	if err := b.Ack(ctxT(t), d.Receipt, InSession(mine.ID)); err != nil {
		t.Fatalf("ack by its session: %v", err)
	}
	plain := mustReserve(t, b, q, WithVisibility(time.Hour))
	if err := b.Ack(ctxT(t), plain.Receipt, InSession(mine.ID)); !errors.Is(err, ErrNotYours) {
		t.Errorf("a session acking a reservation made without one: %v, want ErrNotYours", err)
	}
	if err := b.Ack(ctxT(t), plain.Receipt); err != nil {
		t.Fatalf("ack with the receipt alone: %v", err)
	}
}

// The receipt's compare, which guards every ack, nack and extend in the
// same transaction as its write, fails for an old receipt once the
// reservation was made again, even where claim's read (possibly from a
// view that lags) let it through: checked here directly, since only a
// race between the claim and the write can reach it through Ack.
func TestHoldsComparesTheReservationsCreation(t *testing.T) {
	b1, b2, q := newBroker(t, "a"), newBroker(t, "b"), queueName(t)
	mustEnqueue(t, b1, q, "x")
	first := mustReserve(t, b1, q, WithVisibility(100*time.Millisecond))
	second := mustReserve(t, b2, q, WithWait(10*time.Second)) // takes it over after the deadline
	if second.Receipt.Seq != first.Receipt.Seq || second.Receipt.Rev == first.Receipt.Rev {
		t.Fatalf("second delivery %+v after first %+v", second.Receipt, first.Receipt)
	}
	k := b1.keys(q)
	for _, tc := range []struct {
		r    Receipt
		want bool
	}{{first.Receipt, false}, {second.Receipt, true}} {
		resp, err := b1.cli.Txn(ctxT(t)).If(holds(k, tc.r)).Commit()
		if err != nil {
			t.Fatal(err)
		}
		if resp.Succeeded != tc.want {
			t.Fatalf("holds(receipt of rev %d) = %v, want %v", tc.r.Rev, resp.Succeeded, tc.want)
		}
	}
}
