package session

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/beaconhq/beacon/internal/etcdtest"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// A session closed while etcd does not answer (its connection went
// silent): the first revoke times out, and the lease must still be gone
// once etcd answers again, long before its TTL. (A revoke that was tried
// once left the lease, and what it held, alive for its TTL.)
func TestRevokeRetriedUntilDone(t *testing.T) {
	direct, _ := etcdtest.New(t)
	r := newRelay(t, strings.TrimPrefix(direct.Endpoints()[0], "http://"))
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{r.endpoint()}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	m := NewManager(cli)
	const ttl = 120 * time.Second
	s, err := m.Open(context.Background(), "t", ttl)
	if err != nil {
		t.Fatal(err)
	}
	lease := s.Lease()

	r.frozen.Store(true)
	closed := make(chan struct{})
	go func() { s.Close(); close(closed) }()
	select {
	case <-closed: // after the first try timed out
	case <-time.After(30 * time.Second):
		t.Fatal("Close did not return within 30s while etcd was silent")
	}
	if resp, err := direct.TimeToLive(context.Background(), lease); err != nil || resp.TTL <= 0 {
		t.Fatalf("the lease is gone although etcd was silent (TTL %v, %v): the test proves nothing", resp, err)
	}
	r.heal()

	// Bound: the retries' backoff (2s at most) and a reconnection, far
	// below the TTL the lease would otherwise live for.
	deadline := time.Now().Add(45 * time.Second)
	for {
		resp, err := direct.TimeToLive(context.Background(), lease)
		if err != nil {
			t.Fatal(err)
		}
		if resp.TTL == -1 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the closed session's lease %x lives on (TTL %ds left) 45s after etcd answered again", lease, resp.TTL)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
