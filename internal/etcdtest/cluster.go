package etcdtest

import (
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
)

// Cluster starts n voters in the test's process, named v1..vn, each on
// loopback ports of its own, and waits until all serve. stop[i] stops
// member i (once; the rest stop with the test): to take a voter down, or
// quorum away.
func Cluster(t testing.TB, n int) (members []*embed.Etcd, stop []func()) {
	t.Helper()
	dir := t.TempDir()
	cus, pus := make([]url.URL, n), make([]url.URL, n)
	var initial []string
	for i := range n {
		cus[i] = url.URL{Scheme: "http", Host: freeAddr(t)}
		pus[i] = url.URL{Scheme: "http", Host: freeAddr(t)}
		initial = append(initial, fmt.Sprintf("v%d=%s", i+1, pus[i].String()))
	}
	members = make([]*embed.Etcd, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		cfg := embed.NewConfig()
		cfg.Name = fmt.Sprintf("v%d", i+1)
		cfg.Dir = filepath.Join(dir, cfg.Name)
		cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{cus[i]}, []url.URL{cus[i]}
		cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{pus[i]}, []url.URL{pus[i]}
		cfg.InitialCluster = strings.Join(initial, ",")
		cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
		cfg.UnsafeNoFsync = true
		wg.Add(1)
		go func() { // the members start together: each waits for the others
			defer wg.Done()
			members[i], errs[i] = embed.StartEtcd(cfg)
		}()
	}
	wg.Wait()
	for i, e := range members {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		once := sync.OnceFunc(e.Close)
		stop = append(stop, once)
		t.Cleanup(once)
	}
	for _, e := range members {
		select {
		case <-e.Server.ReadyNotify():
		case <-time.After(30 * time.Second):
			t.Fatalf("a member of %d was not ready after 30s", n)
		}
	}
	return members, stop
}

func freeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}
