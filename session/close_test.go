package session

import (
	"context"
	"testing"
	"time"

	"github.com/beaconhq/beacon/internal/etcdtest"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// leaseLeft is the lease's remaining TTL in seconds, -1 once etcd no
// longer has it.
func leaseLeft(t *testing.T, cli *clientv3.Client, lease clientv3.LeaseID) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := cli.TimeToLive(ctx, lease)
	if err != nil {
		t.Fatal(err)
	}
	return resp.TTL
}

// Close revokes the session's lease, so that what is bound to it goes at
// once; Abandon leaves the lease to expire after its TTL. Both end the
// session: Done is closed, the manager forgets it, and OnClose hooks run.
func TestCloseRevokesAbandonDoesNot(t *testing.T) {
	cli, _ := etcdtest.New(t)
	m := NewManager(cli)
	ctx := context.Background()
	for _, tc := range []struct {
		name   string
		end    func(*Session)
		revoke bool
	}{
		{"close", (*Session).Close, true},
		{"abandon", (*Session).Abandon, false},
	} {
		s, err := m.Open(ctx, tc.name, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		lease := s.Lease()
		if _, err := cli.Put(ctx, "/held/"+tc.name, "x", clientv3.WithLease(lease)); err != nil {
			t.Fatal(err)
		}
		hooked := make(chan struct{})
		s.OnClose(func() { close(hooked) })
		tc.end(s)

		select {
		case <-s.Done():
		default:
			t.Fatalf("%s: Done not closed once it returned", tc.name)
		}
		select {
		case <-hooked:
		default:
			t.Fatalf("%s: the OnClose hook had not run once it returned", tc.name)
		}
		if _, err := m.Get(s.ID); err == nil {
			t.Fatalf("%s: the manager still lists the session", tc.name)
		}
		left := leaseLeft(t, cli, lease)
		switch {
		case tc.revoke && left != -1:
			// The first revoke is tried before Close returns; a failed
			// try is retried in the background: wait for it (bounded).
			for end := time.Now().Add(20 * time.Second); left != -1; left = leaseLeft(t, cli, lease) {
				if time.Now().After(end) {
					t.Fatalf("close: the lease still has %ds left 20s later: not revoked", left)
				}
				time.Sleep(20 * time.Millisecond)
			}
		case !tc.revoke && left <= 0:
			t.Fatalf("abandon: the lease is gone (%d): Abandon must leave it to its TTL", left)
		}
		resp, err := cli.Get(ctx, "/held/"+tc.name)
		if err != nil || (len(resp.Kvs) == 0) != tc.revoke {
			t.Fatalf("%s: the key bound to the lease: %v %v", tc.name, resp.Kvs, err)
		}
	}
}
