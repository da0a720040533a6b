package embedded

import (
	"context"
	"fmt"
	"math"
	"net"
	"net/url"
	"time"

	"github.com/beaconhq/beacon/cluster"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/etcdserver/api/v3election/v3electionpb"
	"go.etcd.io/etcd/server/v3/etcdserver/api/v3lock/v3lockpb"
	"go.etcd.io/etcd/server/v3/proxy/grpcproxy"
	"go.uber.org/zap"
	"google.golang.org/grpc"
)

// proxySyncInterval is how often a proxy refreshes its member list, so that
// it follows members that come and go.
const proxySyncInterval = 5 * time.Second

// startProxy serves an etcd-compatible endpoint on the client URL, backed
// by the cluster's members, so etcdctl on this host keeps working. It keeps
// no raft state. known are client URLs already learnt (by a join), else the
// proxy finds the members through --join and the ones it saw last time.
func startProxy(ctx context.Context, o Options, known []string) (*Node, error) {
	if len(known) == 0 {
		known = append([]string{}, o.Join...)
		if st, err := readState(o.DataDir); err == nil && st != nil && st.Role == cluster.RoleProxy {
			known = append(known, st.Endpoints...)
		}
		probe, err := reachCluster(ctx, o, known)
		if err != nil {
			return nil, err
		}
		// Another running agent of this name keeps it (a join checks in
		// joinLocked; this is a proxy's own start).
		err = cluster.CheckNameFree(ctx, probe, o.Namespace, cluster.NodeInfo{Name: o.Name, ClientURL: o.ClientURL})
		known = probe.Endpoints()
		probe.Close()
		if err != nil {
			return nil, err
		}
	}
	cli, err := newClient(o, known, proxySyncInterval)
	if err != nil {
		return nil, err
	}

	u, err := url.Parse(o.ClientURL)
	if err != nil {
		cli.Close()
		return nil, err
	}
	lis, err := net.Listen("tcp", u.Host)
	if err != nil {
		cli.Close()
		return nil, fmt.Errorf("client-url %s: %v", o.ClientURL, err)
	}

	lg := o.Logger.Named("proxy")
	sopts, err := proxyServerOptions(o.TLS)
	if err != nil {
		cli.Close()
		lis.Close()
		return nil, err
	}
	backend := cli
	if o.creds != nil {
		// The agent's own client is the agent user's; the grpc-proxy's
		// carries no credentials of its own, only each caller's token.
		backend, err = newClientAs(o, known, proxySyncInterval, asNobody,
			grpc.WithUnaryInterceptor(grpcproxy.AuthUnaryClientInterceptor),
			grpc.WithStreamInterceptor(grpcproxy.AuthStreamClientInterceptor))
		if err != nil {
			cli.Close()
			lis.Close()
			return nil, err
		}
	}
	srv := newProxyServer(backend, lg, o.creds != nil, sopts...)
	n := newNode(o, cluster.RoleProxy)
	n.client = cli
	n.proxy = srv
	if backend != cli {
		n.proxyBackend = backend
	}
	go func() {
		_ = srv.Serve(lis) // returns when Close stops the server
	}()
	go func() {
		if err := n.saveState(context.Background()); err != nil {
			lg.Warn("could not record cluster state in the data dir")
		}
	}()
	return n, nil
}

// NewProxyServer is etcd's grpc-proxy on cli: KV, Watch, Lease, Cluster,
// Maintenance, Auth, Election and Lock, each forwarded to the members.
// opts add to the server's options (its TLS credentials).
func NewProxyServer(cli *clientv3.Client, lg *zap.Logger, opts ...grpc.ServerOption) *grpc.Server {
	return newProxyServer(cli, lg, false, opts...)
}

// newProxyServer is NewProxyServer; with etcdAuth, no read is answered
// from the proxy's cache (linearizableKV).
func newProxyServer(cli *clientv3.Client, lg *zap.Logger, etcdAuth bool, opts ...grpc.ServerOption) *grpc.Server {
	var kv pb.KVServer
	kv, _ = grpcproxy.NewKvProxy(cli)
	if etcdAuth {
		kv = linearizableKV{kv}
	}
	watch, _ := grpcproxy.NewWatchProxy(cli.Ctx(), lg, cli)
	cluster, _ := grpcproxy.NewClusterProxy(lg, cli, "", "")
	lease, _ := grpcproxy.NewLeaseProxy(cli.Ctx(), cli)

	srv := grpc.NewServer(append([]grpc.ServerOption{grpc.MaxConcurrentStreams(math.MaxUint32)}, opts...)...)
	pb.RegisterKVServer(srv, kv)
	pb.RegisterWatchServer(srv, watch)
	pb.RegisterClusterServer(srv, cluster)
	pb.RegisterLeaseServer(srv, lease)
	pb.RegisterMaintenanceServer(srv, grpcproxy.NewMaintenanceProxy(cli))
	pb.RegisterAuthServer(srv, grpcproxy.NewAuthProxy(cli))
	v3electionpb.RegisterElectionServer(srv, grpcproxy.NewElectionProxy(cli))
	v3lockpb.RegisterLockServer(srv, grpcproxy.NewLockProxy(cli))
	return srv
}

// linearizableKV is the proxy's KV under etcd auth. etcd's kvProxy answers
// a serializable read from its cache, where any earlier caller's read put
// it, without asking the members, so without an auth check: a caller
// without credentials would read what the agents read. Here every read is
// linearizable, so it goes to the members, which check the caller's token.
type linearizableKV struct{ pb.KVServer }

func (k linearizableKV) Range(ctx context.Context, r *pb.RangeRequest) (*pb.RangeResponse, error) {
	r.Serializable = false
	return k.KVServer.Range(ctx, r)
}
