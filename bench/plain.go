package bench

import (
	"context"
	"net"
	"net/url"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/beaconhq/beacon/embedded"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
)

// PlainMember runs a bare embedded etcd member with etcd's defaults and
// nothing of beacon's: the plain way the footprint benchmark compares with.
// It blocks until SIGTERM or SIGINT.
func PlainMember(dataDir, clientURL, peerURL string) error {
	cu, err := url.Parse(clientURL)
	if err != nil {
		return err
	}
	pu, err := url.Parse(peerURL)
	if err != nil {
		return err
	}
	cfg := embed.NewConfig()
	cfg.Dir = dataDir
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{*cu}, []url.URL{*cu}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{*pu}, []url.URL{*pu}
	cfg.InitialCluster = cfg.Name + "=" + peerURL
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return err
	}
	defer e.Close()
	waitSignal()
	return nil
}

// PlainProxy runs etcd's grpc-proxy alone on clientURL, in front of the
// members at join. It blocks until SIGTERM or SIGINT.
func PlainProxy(join, clientURL string) error {
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{join}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		return err
	}
	defer cli.Close()
	u, err := url.Parse(clientURL)
	if err != nil {
		return err
	}
	lis, err := net.Listen("tcp", u.Host)
	if err != nil {
		return err
	}
	srv := embedded.NewProxyServer(cli, zap.NewNop())
	go func() { _ = srv.Serve(lis) }()
	defer srv.Stop()
	waitSignal()
	return nil
}

func waitSignal() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	<-ctx.Done()
	_ = os.Stdout.Sync()
}
