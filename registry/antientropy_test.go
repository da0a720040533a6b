package registry

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/beaconhq/beacon/healthcheck"
)

// waitCatalog polls the catalog (bounded) until ok holds.
func waitCatalog(t *testing.T, what string, ok func() bool) {
	t.Helper()
	for end := time.Now().Add(20 * time.Second); !ok(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("the catalog never showed %s", what)
		}
	}
}

// An instance etcd lists for this node that the node does not have (left
// by an earlier run, say) is removed by one anti-entropy pass; this
// node's own registrations and another node's instances stay.
func TestAntiEntropyRemovesStale(t *testing.T) {
	l, cli := testLocal(t, t.TempDir())
	ctx := context.Background()
	if _, _, err := l.Register(ctx, Instance{Service: "kept", ID: "k1", Port: 80}, healthcheck.Definition{}, OwnerAgent); err != nil {
		t.Fatal(err)
	}
	for _, in := range []Instance{
		{ID: "s1", Service: "stale", Node: "n1", Address: "127.0.0.1", Port: 80},
		{ID: "o1", Service: "stale", Node: "other", Address: "127.0.0.2", Port: 80},
	} {
		b, _ := json.Marshal(&in)
		if _, err := cli.Put(ctx, Key("/beacon/", in.Service, in.ID), string(b)); err != nil {
			t.Fatal(err)
		}
	}
	waitCatalog(t, "the stale instances", func() bool { return len(l.catalog.Service("stale")) == 2 })

	l.sync(ctx)

	for key, want := range map[string]int{
		Key("/beacon/", "stale", "s1"): 0, // this node's, not registered: stale
		Key("/beacon/", "stale", "o1"): 1, // another node's
		Key("/beacon/", "kept", "k1"):  1, // registered here
	} {
		resp, err := cli.Get(ctx, key)
		if err != nil || len(resp.Kvs) != want {
			t.Fatalf("%s after an anti-entropy pass: %d keys (%v), want %d", key, len(resp.Kvs), err, want)
		}
	}
}

// Closing a session revokes its lease at once, so its instances leave
// etcd with it: no anti-entropy runs here (testLocal starts none), and the
// session's 60s TTL is far from passing, so only the revoke can remove
// them.
func TestSessionCloseRemovesItsInstances(t *testing.T) {
	l, cli := testLocal(t, t.TempDir())
	ctx := context.Background()
	s, err := l.sessions.Open(ctx, "app", 60*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	lease := s.Lease()
	if _, _, err := l.Register(ctx, Instance{Service: "app", ID: "a1", Port: 80}, healthcheck.Definition{}, SessionOwner(s.ID)); err != nil {
		t.Fatal(err)
	}
	s.Close()
	for end := time.Now().Add(20 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		ttl, err := cli.TimeToLive(ctx, lease)
		if err == nil && ttl.TTL == -1 {
			break
		}
		if time.Now().After(end) {
			t.Fatalf("the closed session's lease still lives (%v): Close did not revoke it", err)
		}
	}
	resp, err := cli.Get(ctx, Key("/beacon/", "app", "a1"))
	if err != nil || len(resp.Kvs) != 0 {
		t.Fatalf("the closed session's instance is still in etcd: %v %v", resp.Kvs, err)
	}
	if regs := l.Registrations(); len(regs) != 0 {
		t.Fatalf("registrations after the session closed: %+v", regs)
	}
}
