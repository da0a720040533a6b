package client

import (
	"context"
	"strconv"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// A healthy session's lease period never comes near its deadline: the
// session confirms at least every quarter of the TTL.
func TestPeriodStaysConfirmed(t *testing.T) {
	_, c, sess := holdTestSession(t, 2*time.Second)
	ctx := context.Background()
	h, err := c.Lock(ctx, sess, "healthy")
	if err != nil {
		t.Fatal(err)
	}
	// Three TTLs: without confirmations the period would have lapsed twice.
	for end := time.Now().Add(6 * time.Second); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		if left := h.Remaining(); left < time.Second {
			t.Fatalf("a healthy hold came within %s of its deadline (TTL 2s)", left)
		}
		select {
		case <-h.Lost():
			t.Fatalf("a healthy hold was lost: %v", h.Err())
		default:
		}
	}
	if err := h.Release(ctx); err != nil {
		t.Fatal(err)
	}
}

// A lease revoked in etcd ends its holds at once, with no time left: the
// revoke may already have let someone else in.
func TestHoldLostWhenLeaseRevoked(t *testing.T) {
	a, c, sess := holdTestSession(t, 30*time.Second)
	ctx := context.Background()
	h, err := c.Lock(ctx, sess, "revoked")
	if err != nil {
		t.Fatal(err)
	}
	id, err := strconv.ParseInt(sess.Period().ID, 16, 64)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.cli.Revoke(ctx, clientv3.LeaseID(id)); err != nil {
		t.Fatal(err)
	}
	select {
	case <-h.Lost():
	case <-time.After(20 * time.Second):
		t.Fatal("the hold outlived its revoked lease")
	}
	if left := h.Remaining(); left > 0 {
		t.Errorf("a hold whose lease was revoked has %s left", left)
	}
	// The session goes on under a new lease, which holds anew.
	if err := pollUntil(20*time.Second, func() bool { return sess.Period().ID != strconv.FormatInt(id, 16) && sess.Period().Err() == nil }); err != nil {
		t.Fatalf("no new lease period: %v", err)
	}
	h2, err := c.Lock(ctx, sess, "revoked")
	if err != nil {
		t.Fatalf("locking again in the new period: %v", err)
	}
	_ = h2.Release(ctx)
}

// holdTestSession opens a session with ttl on an agent of the test's own.
func holdTestSession(t *testing.T, ttl time.Duration) (*testAgent, *Client, *Session) {
	t.Helper()
	a := startTestAgent(t)
	c, err := New(a.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	sess, err := c.NewSession(context.Background(), WithTTL(ttl))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sess.Close() })
	return a, c, sess
}

func pollUntil(d time.Duration, ok func() bool) error {
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		if ok() {
			return nil
		}
	}
	return context.DeadlineExceeded
}
