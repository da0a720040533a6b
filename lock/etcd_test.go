package lock

import (
	"context"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/beaconhq/beacon/internal/etcdtest"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// TestMain gives the shared member a data dir that outlives single tests.
func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "lock-test-")
	if err != nil {
		panic(err)
	}
	etcdDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

var (
	etcdDir  string
	etcdOnce sync.Once
	etcdURL  string
	etcdErr  error
)

// testEtcd starts one embedded etcd member for the package's tests; every
// test uses its own key prefix.
func testEtcd(t *testing.T) *clientv3.Client {
	t.Helper()
	etcdOnce.Do(func() { _, etcdURL, etcdErr = etcdtest.Start(etcdDir) })
	if etcdErr != nil {
		t.Fatal(etcdErr)
	}
	return etcdtest.Client(t, etcdURL)
}

// lease grants a lease for a test; revoke it to play a contender's death.
func lease(t *testing.T, cli *clientv3.Client, ttl int64) clientv3.LeaseID {
	t.Helper()
	resp, err := cli.Grant(context.Background(), ttl)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = cli.Revoke(context.Background(), resp.ID) })
	return resp.ID
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}
