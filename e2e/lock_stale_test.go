package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/beaconhq/beacon/api/beaconpb"
	"github.com/beaconhq/beacon/client"
	"github.com/beaconhq/beacon/internal/testcluster"
	"github.com/beaconhq/beacon/lock"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// lockSessions opens a client of a, closed with the test, and a session
// of it for each name; ctx bounds the test's calls.
func lockSessions(t *testing.T, a *testcluster.Agent, names ...string) (context.Context, beaconpb.LockClient, []*client.Session) {
	t.Helper()
	c, err := client.New(a.APIAddr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	var sessions []*client.Session
	for _, name := range names {
		s, err := c.NewSession(ctx, client.WithName(name))
		if err != nil {
			t.Fatal(err)
		}
		sessions = append(sessions, s)
	}
	return ctx, beaconpb.NewLockClient(c.Conn()), sessions
}

// TestLockStaleTokenOfALiveKey: a session releases a lock and acquires it
// again; its lock key is the same (it is named after the session's lease)
// and still exists, so only the token, the key's create revision, tells
// the old grant from the new one. A fenced write with the old token is
// refused, through the API and through the CLI, and writes nothing; the
// new token's write goes.
func TestLockStaleTokenOfALiveKey(t *testing.T) {
	a, cli := lockOneAgent(t)
	ctx, lc, sessions := lockSessions(t, a, "stale-test")
	sess := sessions[0]
	put := func(g *beaconpb.LockAcquireResponse, value string) error {
		_, err := lc.Fenced(ctx, &beaconpb.LockFencedRequest{Key: g.Key, Token: g.Token, Ops: []*beaconpb.LockFencedOp{
			{Type: beaconpb.LockOpType_LOCK_OP_PUT, Key: "/stale/data", Value: []byte(value)}}})
		return err
	}
	old, err := lc.Acquire(ctx, &beaconpb.LockAcquireRequest{Name: "stale", SessionId: sess.ID})
	if err != nil {
		t.Fatal(err)
	}
	if err := put(old, "old-while-held"); err != nil {
		t.Fatalf("fenced write while holding: %v", err)
	}
	if _, err := lc.Release(ctx, &beaconpb.LockReleaseRequest{Key: old.Key, Token: old.Token, SessionId: sess.ID}); err != nil {
		t.Fatal(err)
	}
	cur, err := lc.Acquire(ctx, &beaconpb.LockAcquireRequest{Name: "stale", SessionId: sess.ID})
	if err != nil {
		t.Fatal(err)
	}
	if cur.Key != old.Key || cur.Token <= old.Token {
		t.Fatalf("re-acquire by the same session: key %s token %d, want the same key %s with a token above %d",
			cur.Key, cur.Token, old.Key, old.Token)
	}

	if err := put(old, "stale"); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("fenced write with the old token of a key that still exists: %v, want FailedPrecondition", err)
	}
	_, stderr, code := lockRun(t, "", nil, "--agent", a.APIAddr, "fenced", "put", "/stale/data", "stale-cli",
		"--lock-key", old.Key, "--token", fmt.Sprint(old.Token))
	if code == 0 || !strings.Contains(stderr, "failed precondition") {
		t.Fatalf("beacon fenced put with the old token: exit %d, %q; want a refusal (failed precondition)", code, stderr)
	}
	resp, err := cli.Get(ctx, "/stale/data")
	if err != nil || len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "old-while-held" {
		t.Fatalf("/stale/data after the stale writes: %v %v, want the value written while held", resp.Kvs, err)
	}
	if err := put(cur, "new"); err != nil {
		t.Fatalf("fenced write with the current token: %v", err)
	}
}

// TestLockWaiterLostThenHolderReleases: a waiter whose session's lease
// ends in etcd while it waits (as after a partition) is refused, and is
// not granted the lock when the holder releases it afterwards.
func TestLockWaiterLostThenHolderReleases(t *testing.T) {
	a, cli := lockOneAgent(t)
	ctx, lc, sessions := lockSessions(t, a, "holder", "waiter")
	holder, waiter := sessions[0], sessions[1]
	held, err := lc.Acquire(ctx, &beaconpb.LockAcquireRequest{Name: "line", SessionId: holder.ID})
	if err != nil {
		t.Fatal(err)
	}
	type answer struct {
		g   *beaconpb.LockAcquireResponse
		err error
	}
	waited := make(chan answer, 1)
	go func() {
		g, err := lc.Acquire(ctx, &beaconpb.LockAcquireRequest{Name: "line", SessionId: waiter.ID})
		waited <- answer{g, err}
	}()
	// The waiter's key is the line's other key; its lease ends in etcd.
	var waiterKey string
	if err := testcluster.Eventually(20*time.Second, func() error {
		resp, err := cli.Get(ctx, "/beacon/locks/line/", clientv3.WithPrefix(), clientv3.WithKeysOnly())
		if err != nil {
			return err
		}
		for _, kv := range resp.Kvs {
			if string(kv.Key) != held.Key {
				waiterKey = string(kv.Key)
				return nil
			}
		}
		return fmt.Errorf("%d keys in line", len(resp.Kvs))
	}); err != nil {
		t.Fatalf("the waiter never stood in line: %v", err)
	}
	lease, err := lock.LeaseOf(waiterKey)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Revoke(ctx, lease); err != nil {
		t.Fatal(err)
	}
	if err := lockWaitGone(ctx, cli, waiterKey); err != nil {
		t.Fatal(err)
	}
	if _, err := lc.Release(ctx, &beaconpb.LockReleaseRequest{Key: held.Key, Token: held.Token, SessionId: holder.ID}); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-waited:
		if r.err == nil || status.Code(r.err) != codes.FailedPrecondition {
			t.Fatalf("the waiter whose lease ended: granted %v, %v; want FailedPrecondition (lock lost) and no grant", r.g, r.err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the waiter whose lease ended had no answer 20s after the holder released")
	}
}
