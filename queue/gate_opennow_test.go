package queue

import (
	"context"
	"errors"
	"testing"
	"time"
)

// A Reserve's own try at opening a gate whose condition does not hold
// leaves its view nothing to wait for. Before, the view was told to wait
// for etcd's revision of the failed try; a write outside the queue after
// the view's last change (here, a config key) never reaches the view, so
// every Reserve on it waited until its caller gave up.
func TestOpenNowFailedWaitsForNothing(t *testing.T) {
	b := newBroker(t, "n1")
	q := queueName(t)
	ctx := ctxT(t)
	if _, _, err := b.Enqueue(ctx, q, []byte("m")); err != nil {
		t.Fatal(err)
	}
	if _, err := b.SetGate(ctx, q, GateCondition{Key: "release/ready", Value: []byte("yes"), HasValue: true}); err != nil {
		t.Fatal(err)
	}
	v, err := b.acquire(q)
	if err != nil {
		t.Fatal(err)
	}
	defer b.release(v)
	if err := v.waitLoaded(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := v.reload(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := b.cli.Put(ctx, "/beacon/config/elsewhere", "x"); err != nil {
		t.Fatal(err)
	}
	if err := v.openNow(ctx); err != nil {
		t.Fatal(err)
	}
	v.mu.Lock()
	want, rev := v.want, v.rev
	v.mu.Unlock()
	if want > rev {
		t.Errorf("after a failed try the view waits for revision %d, and holds %d", want, rev)
	}
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := b.Reserve(rctx, q); !errors.Is(err, ErrEmpty) {
		t.Errorf("reserve behind gate --key release/ready=yes, the key missing: %v, want ErrEmpty", err)
	}
}
