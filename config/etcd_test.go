package config

import (
	"testing"

	"github.com/beaconhq/beacon/internal/etcdtest"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// startEtcd runs a one-member etcd of the test's own and returns a client
// of it.
func startEtcd(t *testing.T) *clientv3.Client {
	t.Helper()
	cli, _ := etcdtest.New(t)
	return cli
}
