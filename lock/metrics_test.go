package lock

import (
	"testing"
	"time"

	"github.com/beaconhq/beacon/api/beaconpb"
	mt "github.com/beaconhq/beacon/internal/metricstest"
)

// The waiters gauge counts Acquire calls waiting for their turn, and the
// grants counter every grant, and neither a TryAcquire that found the
// lock taken.
func TestLockMetrics(t *testing.T) {
	s, m := testService(t)
	ctx := ctxT(t)
	c := s.Metrics()
	first, second, third := openSession(t, m), openSession(t, m), openSession(t, m)
	held, err := s.Acquire(ctx, &beaconpb.LockAcquireRequest{Name: "a", SessionId: first.ID})
	if err != nil || !held.Acquired {
		t.Fatalf("first Acquire: %v %v", held, err)
	}
	mt.Wait(t, c, 10*time.Second, "beacon_lock_grants_total", mt.Is(1))

	type result struct {
		resp *beaconpb.LockAcquireResponse
		err  error
	}
	waited := make(chan result, 1)
	go func() {
		r, err := s.Acquire(ctx, &beaconpb.LockAcquireRequest{Name: "a", SessionId: second.ID})
		waited <- result{r, err}
	}()
	mt.Wait(t, c, 10*time.Second, "beacon_lock_waiters", mt.Is(1))
	if r, err := s.TryAcquire(ctx, &beaconpb.LockAcquireRequest{Name: "a", SessionId: third.ID}); err != nil || r.Acquired {
		t.Fatalf("TryAcquire of a held lock: %v %v", r, err)
	}
	if v := mt.Value(t, c, "beacon_lock_grants_total"); v != 1 {
		t.Fatalf("grants after a TryAcquire that failed: %v, want 1", v)
	}
	if _, err := s.Release(ctx, &beaconpb.LockReleaseRequest{Key: held.Key, Token: held.Token, SessionId: first.ID}); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-waited:
		if r.err != nil || !r.resp.Acquired {
			t.Fatalf("the waiter: %v %v", r.resp, r.err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the waiter was not granted the released lock within 20s")
	}
	mt.Wait(t, c, 10*time.Second, "beacon_lock_waiters", mt.Is(0))
	mt.Wait(t, c, 10*time.Second, "beacon_lock_grants_total", mt.Is(2))
}
