package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/beaconhq/beacon/internal/testcluster"
)

// Issue 9: etcd held its recent raft entries by count (10,000 since the
// last disk snapshot, 5,000 for slow followers), whatever their size. An
// agent's member now runs with the config file's etcd-snapshot-count and
// etcd-snapshot-catchup-entries (defaults 1,000 each): etcd says so when
// it starts, and saves a disk snapshot every etcd-snapshot-count entries.
func TestMemberRaftLogBounds(t *testing.T) {
	c := testcluster.New(t)
	a := c.Host("n1")
	cfg, write := configFile(t)
	// At debug: etcd's own start line (INFO) is kept at debug otherwise.
	write("etcd-snapshot-count: 100\netcd-snapshot-catchup-entries: 50\nlog-level: debug\n")
	a.Start("--config", cfg)
	a.WaitReady(readyWithin)
	log := a.Log()
	if !strings.Contains(log, `"snapshot-count": 100,`) || !strings.Contains(log, `"snapshot-catchup-entries": 50,`) {
		t.Fatalf("etcd did not start with snapshot-count 100 and snapshot-catchup-entries 50:\n%s", log)
	}
	before, err := metric(a, "etcd_debugging_snap_save_total_duration_seconds_count")
	if err != nil {
		t.Fatal(err)
	}
	cli := a.Client()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	for i := range 450 {
		if _, err := cli.Put(ctx, "/raftlog-e2e", fmt.Sprint(i)); err != nil {
			t.Fatal(err)
		}
	}
	after, err := metric(a, "etcd_debugging_snap_save_total_duration_seconds_count")
	if err != nil {
		t.Fatal(err)
	}
	if after-before < 4 {
		t.Fatalf("%v disk snapshots in 450 puts with etcd-snapshot-count 100, want at least 4", after-before)
	}
}
