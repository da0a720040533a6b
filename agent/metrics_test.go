package agent

import (
	"testing"

	"github.com/beaconhq/beacon/cluster"
)

// Each role serves the etcd metrics it has: a member etcd's server ones,
// a proxy the grpc-proxy's, an external agent none; beacon's own and
// Go's whatever the role.
func TestMetricsByRole(t *testing.T) {
	for _, c := range []struct {
		role   cluster.Role
		served []string
		not    []string
	}{
		{cluster.RoleMember, []string{"etcd_server_has_leader", "etcd_disk_wal_fsync_duration_seconds", "beacon_catalog_instances", "go_goroutines"}, []string{"etcd_grpc_proxy_cache_hits_total"}},
		{cluster.RoleProxy, []string{"etcd_grpc_proxy_cache_hits_total", "beacon_catalog_instances", "go_goroutines", "process_open_fds"}, []string{"etcd_server_has_leader", "etcd_mvcc_db_total_size_in_bytes", "etcd_debugging_mvcc_keys_total"}},
		{cluster.RoleExternal, []string{"beacon_dns_queries_total", "go_goroutines"}, []string{"etcd_server_has_leader", "etcd_grpc_proxy_cache_hits_total"}},
	} {
		drop := notServedBy(c.role)
		for _, name := range c.served {
			if drop(name) {
				t.Errorf("%s: %s left out", c.role, name)
			}
		}
		for _, name := range c.not {
			if !drop(name) {
				t.Errorf("%s: %s served", c.role, name)
			}
		}
	}
}
