package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/beaconhq/beacon/internal/testcluster"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// TestKillVoter: kill -9 of one voter of three, the one a proxy joined
// through. Writes keep succeeding through every other agent, the proxy
// included; the voter restarts on its data dir and catches up.
func TestKillVoter(t *testing.T) {
	c := testcluster.New(t)
	members := startStatic(t, c, 3)
	proxy := c.Host("p1")
	proxy.Start("--role", "proxy", "--join", members[0].ClientURL)
	proxy.WaitReady(readyWithin)

	victim := members[0]
	victim.Kill()

	survivors := []*testcluster.Agent{members[1], members[2], proxy}
	for i := 0; i < 20; i++ {
		for _, a := range survivors {
			key := fmt.Sprintf("/t/%s/%d", a.Name, i)
			// The proxy's client may still be on the dead member's
			// connection for its first call: allow the failover, then
			// require every write to succeed.
			err := testcluster.Eventually(15*time.Second, func() error { return putVia(t, a, key, "v") })
			if err != nil {
				t.Fatalf("write %s through %s after the kill: %v", key, a.Name, err)
			}
		}
	}

	// The proxy answers etcd clients and the beacon API on its own.
	if _, stderr, err := proxy.CLI("status"); err != nil {
		t.Fatalf("beacon status on the proxy: %v: %s", err, stderr)
	}

	// Restart on the same data dir: it resumes and catches up.
	victim.Start("--initial-cluster", testcluster.InitialCluster(members...))
	victim.WaitReady(readyWithin)
	cli := victim.Client()
	err := testcluster.Eventually(30*time.Second, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		// A serializable read answers from the victim's own copy.
		r, err := cli.Get(ctx, "/t/", clientv3.WithPrefix(), clientv3.WithSerializable(), clientv3.WithCountOnly())
		if err != nil {
			return err
		}
		if r.Count != 60 {
			return fmt.Errorf("restarted voter has %d of 60 keys", r.Count)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	waitMembers(t, []*testcluster.Agent{members[0], members[1], members[2], proxy}, func(ms []testcluster.Member) error {
		if countRole(ms, "voter") != 3 || countRole(ms, "proxy") != 1 {
			return fmt.Errorf("want 3 voters and the proxy")
		}
		return nil
	})
}
