package lock

import (
	"context"
	"crypto/rand"
	"fmt"
	"net/url"
	"os"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
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

// testEtcd starts one embedded etcd member for the package's tests, on a
// loopback address of its own; every test uses its own key prefix.
func testEtcd(t *testing.T) *clientv3.Client {
	t.Helper()
	etcdOnce.Do(func() {
		var b [3]byte
		_, _ = rand.Read(b[:])
		ip := fmt.Sprintf("127.%d.%d.%d", 1+b[0]%250, b[1], 1+b[2]%250)
		cu, _ := url.Parse("http://" + ip + ":2379")
		pu, _ := url.Parse("http://" + ip + ":2380")
		cfg := embed.NewConfig()
		cfg.Name = "locktest"
		cfg.Dir = etcdDir
		cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{*cu}, []url.URL{*cu}
		cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{*pu}, []url.URL{*pu}
		cfg.InitialCluster = cfg.Name + "=" + pu.String()
		cfg.LogLevel = "error"
		cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
		e, err := embed.StartEtcd(cfg)
		if err != nil {
			etcdErr = err
			return
		}
		select {
		case <-e.Server.ReadyNotify():
			etcdURL = cu.String()
		case <-time.After(30 * time.Second):
			etcdErr = fmt.Errorf("embedded etcd not ready")
		}
	})
	if etcdErr != nil {
		t.Fatal(etcdErr)
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{etcdURL}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
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
