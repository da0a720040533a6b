package cluster

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"testing"
	"time"

	"github.com/beaconhq/beacon/pki"
	"go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/client/pkg/v3/transport"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
)

// TestGoneFromOverTLS: when the answer to a member's own removal is lost,
// RemoveMember asks another voter whether the member left. On a TLS
// cluster that voter's client URL is https and takes only clients with a
// certificate of the fleet's CA: without WithTLS's config the question
// fails and a member that did leave is reported as not gone.
func TestGoneFromOverTLS(t *testing.T) {
	dir := t.TempDir()
	const ip = "127.0.0.1"
	if err := pki.InitCA(dir, 1); err != nil {
		t.Fatal(err)
	}
	if err := pki.Issue(dir, pki.CertOptions{Name: "n1", IPs: []string{ip}, Days: 1}); err != nil {
		t.Fatal(err)
	}
	cert, key := pki.CertFiles(dir, "n1")
	files, err := pki.FilesOf(filepath.Join(dir, pki.CAFile), cert, key)
	if err != nil {
		t.Fatal(err)
	}

	cfg := embed.NewConfig()
	cfg.Dir = filepath.Join(dir, "data")
	cu, _ := url.Parse(fmt.Sprintf("https://%s:%d", ip, freePort(t)))
	pu, _ := url.Parse(fmt.Sprintf("https://%s:%d", ip, freePort(t)))
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{*cu}, []url.URL{*cu}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{*pu}, []url.URL{*pu}
	cfg.InitialCluster = cfg.Name + "=" + pu.String()
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
	cfg.UnsafeNoFsync = true
	info := transport.TLSInfo{CertFile: cert, KeyFile: key, TrustedCAFile: files.CA, ClientCertAuth: true}
	cfg.ClientTLSInfo, cfg.PeerTLSInfo = info, info
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	select {
	case <-e.Server.ReadyNotify():
	case <-time.After(30 * time.Second):
		t.Fatal("TLS etcd not ready after 30s")
	}

	voter := &etcdserverpb.Member{Name: "n1", ClientURLs: []string{cu.String()}}
	const departed = 0xbeac0
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tc, err := files.ClientConfig()
	if err != nil {
		t.Fatal(err)
	}
	if !goneFrom(ctx, voter, departed, tc) {
		t.Fatal("over TLS, the voter was not asked (or said the departed member is still listed)")
	}
	if goneFrom(ctx, voter, uint64(e.Server.MemberID()), tc) {
		t.Fatal("over TLS, the voter's own id was reported gone")
	}
	if goneFrom(ctx, voter, departed, nil) {
		t.Fatal("a plain client got an answer from an https client URL that requires certificates")
	}
}

// freePort is a TCP port free on loopback now.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
