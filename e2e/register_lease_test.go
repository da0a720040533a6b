package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// A registration written just after the agent's lease ended (expired
// during a fault, here revoked) waits for the lease the agent grants next
// and is written under it: the soak saw `beacon register` fail with
// "internal: etcdserver: requested lease not found" instead.
func TestRegisterAfterTheAgentsLeaseEnded(t *testing.T) {
	a, cli := lockOneAgent(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// Every lease the agent holds ends (its node record's, its own
	// registrations').
	leases, err := cli.Leases(ctx)
	if err != nil || len(leases.Leases) == 0 {
		t.Fatalf("the agent's leases: %v %v", leases, err)
	}
	revoked := map[clientv3.LeaseID]bool{}
	for _, l := range leases.Leases {
		if _, err := cli.Revoke(ctx, l.ID); err != nil {
			t.Fatal(err)
		}
		revoked[l.ID] = true
	}
	out, stderr, err := a.CLI("register", "--name", "web", "--port", "8080", "--call-timeout", "20s")
	if err != nil {
		t.Fatalf("beacon register after the agent's lease ended: %v: %s %s", err, out, stderr)
	}
	got, err := cli.Get(ctx, "/beacon/services/web/", clientv3.WithPrefix())
	if err != nil || len(got.Kvs) != 1 {
		t.Fatalf("the instance in etcd: %v %v", got, err)
	}
	if l := clientv3.LeaseID(got.Kvs[0].Lease); l == 0 || revoked[l] {
		t.Fatalf("the instance is under lease %x, one of the revoked", l)
	}
	if strings.Contains(stderr, "lease not found") {
		t.Fatalf("stderr: %s", stderr)
	}
}
