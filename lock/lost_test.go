package lock

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/beaconhq/beacon/internal/etcdtest"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// TestWaiterLostThenHolderReleases: a waiter whose lease ends while it
// waits is told ErrLost, and is never granted the lock when the holder
// releases it afterwards: its key is gone, so a grant would be one no
// fenced write can use and no other contender respects.
func TestWaiterLostThenHolderReleases(t *testing.T) { withHubs(t, testWaiterLostThenHolderReleases) }

func testWaiterLostThenHolderReleases(t *testing.T, cli *clientv3.Client, opts ...Option) {
	ctx := ctxT(t)
	prefix := testPrefix(t)
	a, err := Acquire(ctx, cli, prefix, lease(t, cli, 30), opts...)
	if err != nil {
		t.Fatal(err)
	}
	b := lease(t, cli, 30)
	bGot := acquireAsync(ctx, cli, prefix, b, opts...)
	waitKeys(t, cli, prefix, 2)
	if _, err := cli.Revoke(ctx, b); err != nil { // B's lease ends while it waits
		t.Fatal(err)
	}
	waitKeys(t, cli, prefix, 1)
	if err := releaser(ctx, cli, opts)(a); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-bGot:
		if r.l != nil || !errors.Is(r.err, ErrLost) {
			t.Fatalf("the waiter whose lease ended: lock %+v, %v; want ErrLost and no grant", r.l, r.err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("the waiter whose lease ended had no answer 15s after the holder released")
	}
}

// TestWatchLostWithoutQuorum: a holder whose cluster loses quorum (two
// of three voters down; its own member still answers, without a leader)
// is told LOST once the grant has gone unconfirmed for longer than its
// lease's TTL, rather than left to believe in it.
func TestWatchLostWithoutQuorum(t *testing.T) {
	members, stop := etcdtest.Cluster(t, 3)
	cli := etcdtest.Client(t, members[0].Clients[0].Addr().String())
	testWatchLost(t, cli, func() { stop[1](); stop[2]() })
}

// TestWatchLostWithoutCluster: the same when the member the holder's
// client talks to is gone altogether (a proxy cut off from the cluster).
func TestWatchLostWithoutCluster(t *testing.T) {
	members, stop := etcdtest.Cluster(t, 1)
	cli := etcdtest.Client(t, members[0].Clients[0].Addr().String())
	testWatchLost(t, cli, stop[0])
}

func testWatchLost(t *testing.T, cli *clientv3.Client, cut func()) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const ttl = 2
	g, err := cli.Grant(ctx, ttl)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.KeepAlive(ctx, g.ID); err != nil {
		t.Fatal(err)
	}
	l, err := Acquire(ctx, cli, testPrefix(t), g.ID)
	if err != nil {
		t.Fatal(err)
	}
	held := make(chan struct{})
	done := make(chan error, 1)
	go func() { done <- Watch(ctx, cli, l.Key, l.Token, func() { close(held) }) }()
	select {
	case <-held:
	case err := <-done:
		t.Fatalf("Watch of a held grant returned %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("Watch did not confirm a held grant within 20s")
	}
	cut()
	select {
	case err := <-done:
		if !errors.Is(err, ErrLost) {
			t.Fatalf("Watch once the cluster could not confirm the grant: %v, want ErrLost", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("Watch still reported the grant held 30s after the cluster went, with a %ds lease", ttl)
	}
}
