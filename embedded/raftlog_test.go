package embedded

import (
	"context"
	"crypto/rand"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// snapshotsSaved is how many raft snapshots the members of this process
// have saved to disk (etcd's own histogram of their save time).
func snapshotsSaved(t *testing.T) uint64 {
	t.Helper()
	families, err := prometheus.DefaultGatherer.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() == "etcd_debugging_snap_save_total_duration_seconds" {
			return f.GetMetric()[0].GetHistogram().GetSampleCount()
		}
	}
	return 0
}

// The member holds fewer raft entries in memory than etcd's defaults
// (10,000 and 5,000, which with 1 MiB values held gigabytes): by default
// 1,000 and 1,000, and what the options say. The running member takes a
// disk snapshot every SnapshotCount entries.
func TestRaftLogBounded(t *testing.T) {
	cfg, err := etcdConfig(Options{Name: "d", DataDir: t.TempDir(), ClientURL: "http://127.0.0.1:2379", PeerURL: "http://127.0.0.1:2380"}, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	if cfg.SnapshotCount != 1000 || cfg.SnapshotCatchUpEntries != 1000 {
		t.Fatalf("default snapshot count %d, catch-up entries %d; want 1000 and 1000", cfg.SnapshotCount, cfg.SnapshotCatchUpEntries)
	}

	var b [3]byte
	_, _ = rand.Read(b[:])
	ip := fmt.Sprintf("127.%d.%d.%d", 1+b[0]%250, b[1], 1+b[2]%250)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	n, err := Start(ctx, Options{
		Name: "m1", DataDir: t.TempDir(), Logger: zap.NewNop(),
		ClientURL: "http://" + ip + ":2379", PeerURL: "http://" + ip + ":2380",
		SnapshotCount: 100, SnapshotCatchUpEntries: 50,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	if sc := n.etcd.Server.Cfg; sc.SnapshotCount != 100 || sc.SnapshotCatchUpEntries != 50 {
		t.Fatalf("the member runs with snapshot count %d, catch-up entries %d; want 100 and 50", sc.SnapshotCount, sc.SnapshotCatchUpEntries)
	}
	before := snapshotsSaved(t)
	for i := range 450 {
		if _, err := n.Client().Put(ctx, "/raftlog-test", fmt.Sprint(i)); err != nil {
			t.Fatal(err)
		}
	}
	if saved := snapshotsSaved(t) - before; saved < 4 {
		t.Fatalf("%d disk snapshots in 450 puts with snapshot count 100, want at least 4", saved)
	}
}
