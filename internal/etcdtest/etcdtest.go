// Package etcdtest runs a real one-member etcd inside a test's process,
// for the packages whose logic is on clientv3 (lock, election, queue,
// config, registry, client): no mock, and no process to manage. Each
// member listens on a loopback address of its own, 127.x.y.z, with the
// usual ports, so that members of packages tested in parallel never
// collide.
package etcdtest

import (
	"crypto/rand"
	"fmt"
	"net/url"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
)

// Start starts a member with its data in dir and waits until it serves;
// it returns the member and its client URL. The caller closes it: this is
// for a member a package's tests share (from TestMain, or once).
func Start(dir string) (*embed.Etcd, string, error) {
	var b [3]byte
	_, _ = rand.Read(b[:])
	ip := fmt.Sprintf("127.%d.%d.%d", 1+b[0]%250, b[1], 1+b[2]%250)
	cu, _ := url.Parse("http://" + ip + ":2379")
	pu, _ := url.Parse("http://" + ip + ":2380")
	cfg := embed.NewConfig()
	cfg.Dir = dir
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{*cu}, []url.URL{*cu}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{*pu}, []url.URL{*pu}
	cfg.InitialCluster = cfg.Name + "=" + pu.String()
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
	cfg.UnsafeNoFsync = true // durability is etcd's own concern, not these tests'
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, "", err
	}
	select {
	case <-e.Server.ReadyNotify():
		return e, cu.String(), nil
	case <-time.After(30 * time.Second):
		e.Close()
		return nil, "", fmt.Errorf("embedded etcd on %s not ready after 30s", ip)
	}
}

// New starts a member of the test's own, closed with it, and returns a
// client of it and the member (to stop it, say).
func New(t testing.TB) (*clientv3.Client, *embed.Etcd) {
	t.Helper()
	e, endpoint, err := Start(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	return Client(t, endpoint), e
}

// Client is a client of endpoint, closed with the test.
func Client(t testing.TB, endpoint string) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{endpoint}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}
