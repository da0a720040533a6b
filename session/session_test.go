package session

import (
	"context"
	"testing"
	"time"

	"github.com/beaconhq/beacon/internal/etcdtest"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// A session closed while its replacement lease is being granted must not
// leave that lease alive: nothing may live on under a closed session.
func TestCloseDuringLeaseReplacement(t *testing.T) {
	cli, _ := etcdtest.New(t)
	m := NewManager(cli)
	s, err := m.Open(context.Background(), "t", 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	granted := make(chan clientv3.LeaseID, 1)
	testHookLeaseGranted = func(hs *Session, lease clientv3.LeaseID) {
		if hs != s {
			return
		}
		hs.Close() // in the window between grant and adoption
		granted <- lease
	}
	defer func() { testHookLeaseGranted = nil }()

	// etcd ends the session's lease: the session grants another.
	if _, err := cli.Revoke(context.Background(), s.Lease()); err != nil {
		t.Fatal(err)
	}
	var lease clientv3.LeaseID
	select {
	case lease = <-granted:
	case <-time.After(20 * time.Second):
		t.Fatal("no replacement lease was granted")
	}
	var ttl int64
	for i := 0; i < 200; i++ { // the revoke follows the hook at once
		resp, err := cli.TimeToLive(context.Background(), lease)
		if err != nil {
			t.Fatal(err)
		}
		if ttl = resp.TTL; ttl == -1 {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("the replacement lease %x of a closed session lives on (TTL %ds)", lease, ttl)
}
