package session

import (
	"context"
	"testing"
	"time"

	"github.com/beaconhq/beacon/internal/etcdtest"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// A TTL of a fraction of a second is rounded up to whole seconds, etcd's
// unit, by Open itself: the session's TTL is the lease's, whoever opens it.
func TestOpenRoundsTTLUp(t *testing.T) {
	cli, _ := etcdtest.New(t)
	m := NewManager(cli)
	defer m.CloseAll(time.Second)
	s, err := m.Open(context.Background(), "frac", 1500*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if s.TTL != 2*time.Second {
		t.Errorf("TTL = %s, want 2s", s.TTL)
	}
	resp, err := cli.TimeToLive(context.Background(), clientv3.LeaseID(s.Lease()))
	if err != nil {
		t.Fatal(err)
	}
	if resp.GrantedTTL != 2 {
		t.Errorf("the lease was granted %ds, want 2", resp.GrantedTTL)
	}
}
