package agent

import (
	"errors"
	"testing"
)

// TestBoundKeys: max-queue-views and the member's raft log bounds are
// taken from a flag, the environment and the config file, default to
// their packages' defaults, and a bad value is refused naming its key.
func TestBoundKeys(t *testing.T) {
	d, err := load(t, "")
	if err != nil {
		t.Fatal(err)
	}
	if d.MaxQueueViews != 1024 || d.EtcdSnapshotCount != 1000 || d.EtcdSnapshotCatchUpEntries != 1000 {
		t.Fatalf("defaults: max-queue-views %d, etcd-snapshot-count %d, etcd-snapshot-catchup-entries %d",
			d.MaxQueueViews, d.EtcdSnapshotCount, d.EtcdSnapshotCatchUpEntries)
	}
	file := writeFile(t, "max-queue-views: 16\netcd-snapshot-count: 500\netcd-snapshot-catchup-entries: 200\n")
	t.Setenv("BEACON_ETCD_SNAPSHOT_COUNT", "700")
	c, err := load(t, file, "--etcd-snapshot-catchup-entries", "300")
	if err != nil {
		t.Fatal(err)
	}
	if c.MaxQueueViews != 16 || c.EtcdSnapshotCount != 700 || c.EtcdSnapshotCatchUpEntries != 300 {
		t.Fatalf("file, env, flag: max-queue-views %d (want 16), etcd-snapshot-count %d (want 700), etcd-snapshot-catchup-entries %d (want 300)",
			c.MaxQueueViews, c.EtcdSnapshotCount, c.EtcdSnapshotCatchUpEntries)
	}
	for _, bad := range [][]string{{"--max-queue-views", "0"}, {"--etcd-snapshot-count", "-1"}, {"--etcd-snapshot-catchup-entries", "0"}} {
		_, err := load(t, "", bad...)
		var ce *ConfigError
		if !errors.As(err, &ce) || ce.Key != bad[0][2:] {
			t.Errorf("%v: %v; want a ConfigError naming %s", bad, err, bad[0][2:])
		}
	}
}

// TestDataQuotaKeys: etcd-quota-backend-bytes and data-quota-percent
// default to etcd's 2 GiB and 75 %, are taken from the file and flags,
// and values out of range are refused naming their key.
func TestDataQuotaKeys(t *testing.T) {
	d, err := load(t, "")
	if err != nil {
		t.Fatal(err)
	}
	if d.EtcdQuotaBackendBytes != 2<<30 || d.DataQuotaPercent != 75 || d.ClientQuotaPercent != 90 {
		t.Fatalf("defaults: etcd-quota-backend-bytes %d, data-quota-percent %d, client-quota-percent %d", d.EtcdQuotaBackendBytes, d.DataQuotaPercent, d.ClientQuotaPercent)
	}
	c, err := load(t, writeFile(t, "etcd-quota-backend-bytes: 33554432\nclient-quota-percent: 100\n"), "--data-quota-percent", "100")
	if err != nil {
		t.Fatal(err)
	}
	if c.EtcdQuotaBackendBytes != 32<<20 || c.DataQuotaPercent != 100 {
		t.Fatalf("file, flag: etcd-quota-backend-bytes %d, data-quota-percent %d", c.EtcdQuotaBackendBytes, c.DataQuotaPercent)
	}
	for _, bad := range [][]string{
		{"--etcd-quota-backend-bytes", "1048576"}, {"--etcd-quota-backend-bytes", "0"}, {"--etcd-quota-backend-bytes", "1000000000000"},
		{"--data-quota-percent", "0"}, {"--data-quota-percent", "101"},
		{"--client-quota-percent", "0"}, {"--client-quota-percent", "60"}, // below data-quota-percent 75
	} {
		_, err := load(t, "", bad...)
		var ce *ConfigError
		if !errors.As(err, &ce) || ce.Key != bad[0][2:] {
			t.Errorf("%v: %v; want a ConfigError naming %s", bad, err, bad[0][2:])
		}
	}
}
