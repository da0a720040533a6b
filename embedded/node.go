// Package embedded runs this host's part of the etcd cluster: an embedded
// voting member, or a proxy with no raft state, or nothing at all when the
// agent fronts an external cluster. It starts, joins, promotes, resumes and
// leaves; everything above it only sees a clientv3.Client.
package embedded

import (
	"context"
	"fmt"
	"github.com/beaconhq/beacon/cluster"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/beaconhq/beacon/acl"
	"github.com/beaconhq/beacon/pki"
	"go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
	"google.golang.org/grpc"
)

// Options say how to start this host's node. The agent validates them.
type Options struct {
	Name           string
	DataDir        string
	Role           cluster.Role // member, proxy, auto, external
	ClientURL      string
	PeerURL        string
	InitialCluster string
	ClusterToken   string // static bootstrap's token; a lone cluster gets a random one
	Join           []string
	Endpoints      []string
	Voters         int
	Namespace      string
	LogLevel       string
	Logger         *zap.Logger
	// JoinTimeout bounds waiting for the join lock and for promotion.
	JoinTimeout time.Duration
	// TLS, when set, makes peer and client traffic mutual TLS: the member
	// serves its URLs with it and every etcd client of the agent dials
	// with it. nil: plain.
	TLS *pki.Files
	// EnableDebug serves etcd's /debug/vars and pprof on the client URL.
	EnableDebug bool
	// ACL turns on etcd's own auth (see etcdauth.go), with the passwords
	// of EtcdCredentialsFile.
	ACL                 bool
	EtcdCredentialsFile string
	// SnapshotCount and SnapshotCatchUpEntries bound the raft entries a
	// member holds in memory (see raftlog.go); 0: DefaultSnapshotCount,
	// DefaultSnapshotCatchUpEntries.
	SnapshotCount          uint64
	SnapshotCatchUpEntries uint64
	// QuotaBackendBytes is the member's backend quota (etcd's
	// quota-backend-bytes); 0: DefaultQuotaBackendBytes.
	QuotaBackendBytes int64

	creds *acl.EtcdCredentials // loaded at Start, with ACL
	// authTokenTTL is etcd's simple-token TTL in seconds (0: etcd's
	// default, 300); tests shorten it.
	authTokenTTL uint
}

// Node is this host's running part of the cluster.
type Node struct {
	role     cluster.Role
	client   *clientv3.Client
	local    *clientv3.Client // for a member: in-process calls, watches through client (localClient)
	inproc   *clientv3.Client // for a member: the in-process client behind local
	memberID uint64
	opts     Options

	etcd         *embed.Etcd
	stopCause    *stopCauseValue
	proxy        *grpc.Server
	proxyBackend *clientv3.Client // the proxy's client, when not client (etcd auth)

	done      chan struct{}
	closeOnce sync.Once
	leaving   atomic.Bool
}

// Start brings up this host's node according to its role and its data dir:
// resume a member whose data is there, join a running cluster, bootstrap a
// new one, proxy, or connect to an external cluster.
func Start(ctx context.Context, o Options) (*Node, error) {
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	if o.JoinTimeout == 0 {
		o.JoinTimeout = 2 * time.Minute
	}
	if err := loadCredentials(&o); err != nil {
		return nil, err
	}
	if o.Role != cluster.RoleExternal && hasMemberData(o.DataDir) {
		st, err := readState(o.DataDir)
		if err != nil {
			return nil, err
		}
		if (st == nil || st.MemberID == "") && len(o.Join) > 0 {
			// Data without a recorded membership: a join was interrupted.
			// If etcd had already promoted it, the data is a voter's:
			// resume it. Otherwise discard it and join afresh (the join
			// removes the learner it left in the cluster).
			if promotedBefore(ctx, o) {
				o.Logger.Info("resuming the member of an interrupted join that had been promoted")
				return resumeMember(ctx, o)
			}
			o.Logger.Info("discarding the data of an interrupted join", zap.String("data-dir", o.DataDir))
			if err := removeEtcdData(o.DataDir); err != nil {
				return nil, err
			}
		} else if o.Role == cluster.RoleProxy {
			return nil, fmt.Errorf("role proxy keeps no raft state, but %s holds member %s's data; start it as --role member, or use another --data-dir for the proxy",
				o.DataDir, o.Name)
		}
	}
	switch {
	case o.Role == cluster.RoleExternal:
		return startExternal(ctx, o)
	case hasMemberData(o.DataDir):
		return resumeMember(ctx, o)
	case o.Role == cluster.RoleProxy:
		return startProxy(ctx, o, nil)
	case len(o.Join) > 0:
		return join(ctx, o)
	default:
		return bootstrapMember(ctx, o)
	}
}

// Role is member, proxy or external.
func (n *Node) Role() cluster.Role { return n.role }

// Client reaches the cluster: this host's own member, or the members a
// proxy or external agent found.
func (n *Node) Client() *clientv3.Client { return n.client }

// LocalClient is the fastest way to the cluster from this process: for a
// member, KV, Lease and the other unary calls go into the embedded server
// in-process (no socket, no serialisation), and watches go through
// Client's connection to the same member (the in-process transport
// deadlocks under many watches; see localClient); otherwise Client. Its
// Maintenance.Status answers for this member whatever endpoint it is
// given, so per-member status must use Client.
func (n *Node) LocalClient() *clientv3.Client {
	if n.local != nil {
		return n.local
	}
	return n.client
}

// BackendStatus reads etcd's status (the backend's size in use, its
// quota): a member's own, else that of the member Client is connected
// to. It is what dataquota's guard judges by.
func (n *Node) BackendStatus(ctx context.Context) (*etcdserverpb.StatusResponse, error) {
	if n.etcd != nil {
		// A member's own backend, read in process (a Status call would
		// dial a connection each time).
		srv := n.etcd.Server
		be := srv.Backend()
		return &etcdserverpb.StatusResponse{DbSize: be.Size(), DbSizeInUse: be.SizeInUse(), DbSizeQuota: srv.Cfg.QuotaBackendBytes}, nil
	}
	// The client's pinned connection, with its credentials: Status(ctx,
	// endpoint) would dial a new connection each time.
	return etcdserverpb.NewMaintenanceClient(n.client.ActiveConnection()).Status(ctx, &etcdserverpb.StatusRequest{})
}

// MemberID is this host's etcd member id, 0 unless a member.
func (n *Node) MemberID() uint64 { return n.memberID }

// Done is closed when the node stops on its own (the member was removed,
// or etcd failed), not when Close is called.
func (n *Node) Done() <-chan struct{} { return n.done }

// Err says why the node stopped on its own.
func (n *Node) Err() error {
	if n.leaving.Load() {
		return nil
	}
	cause := ""
	if n.stopCause != nil {
		cause = n.stopCause.get()
	}
	if strings.Contains(cause, "permanently removed") {
		return fmt.Errorf("%w: delete %s (or use another --data-dir) and start with --join to come back as a new member", ErrRemoved, n.opts.DataDir)
	}
	if cause == "" {
		cause = "see the log above"
	}
	return fmt.Errorf("%w: %s", ErrStopped, cause)
}

// SetLeaving tells the node that its member is about to be removed on
// purpose, so that its stop is not an error; false undoes it.
func (n *Node) SetLeaving(v bool) { n.leaving.Store(v) }

// Close stops the node: its client, its proxy server, its member.
func (n *Node) Close() {
	n.closeOnce.Do(func() {
		if n.local != nil {
			n.local.Close()
		}
		if n.inproc != nil {
			n.inproc.Close()
		}
		if n.client != nil {
			n.client.Close()
		}
		if n.proxy != nil {
			stopGRPC(n.proxy, 2*time.Second)
		}
		if n.proxyBackend != nil {
			n.proxyBackend.Close()
		}
		if n.etcd != nil {
			n.etcd.Close()
		}
	})
}

// MarkLeft records in the data dir that this member left the cluster, so a
// restart explains itself instead of retrying a cluster that refuses it.
func (n *Node) MarkLeft() error {
	st, err := readState(n.opts.DataDir)
	if err != nil || st == nil {
		st = &stateFile{Name: n.opts.Name, Role: n.role}
	}
	st.Left = true
	return writeState(n.opts.DataDir, st)
}

func newNode(o Options, role cluster.Role) *Node {
	return &Node{role: role, opts: o, done: make(chan struct{})}
}

// stopGRPC stops gracefully, then forcibly after d.
func stopGRPC(s *grpc.Server, d time.Duration) {
	stopped := make(chan struct{})
	go func() { s.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(d):
		s.Stop()
	}
}

// clientLogger keeps clientv3's retry chatter out of the agent's log unless
// the user asked for debug.
func clientLogger(o Options) *zap.Logger {
	if o.LogLevel == "debug" {
		return o.Logger.Named("client")
	}
	return o.Logger.Named("client").WithOptions(zap.IncreaseLevel(zap.ErrorLevel))
}

// How the agent's etcd clients find out that a member went silent (its
// link cut without a reset, its host gone). A lease with a TTL of a few
// seconds, and a catalog that must follow changes within it, leave a
// second or two for that:
//
//   - A connection that hears nothing for a second sends a TCP keepalive
//     probe, and is closed when the next one is due with the probe
//     unanswered: about 2 s after the last packet from the member (the
//     kernel counts these in whole seconds). This covers a watch, where
//     the client sends nothing. The members of a beacon cluster ping
//     quiet clients every second (memberPingInterval), so a healthy
//     connection is not closed for one lost packet.
//   - Data the client sent that stays unacknowledged for
//     clientDeadLinkTimeout closes the connection: gRPC sets the socket's
//     TCP_USER_TIMEOUT to DialKeepAliveTimeout. The probes stop while
//     data is outstanding, so a connection written to after its member
//     went silent (a lease renewal) closes this long after that write.
//     750 ms still lets a segment go out three times at LAN round trips
//     (retransmissions come 200 and 600 ms after it at the earliest); a
//     longer wait keeps a dead connection, on which a request or a
//     stream may be placed, open longer than a short TTL allows.
//   - gRPC's own keepalive ping cannot serve: grpc-go raises a client's
//     ping interval below 10 s to 10 s. It stays as the last resort.
//
// A closed connection takes its streams along; clientv3 reopens them on
// a member it still reaches. A unary request caught on it fails
// (Unavailable); whether it took effect is unknown.
const (
	clientDeadLinkTimeout = 750 * time.Millisecond
	clientPingInterval    = 10 * time.Second
	tcpKeepAliveIdle      = time.Second
	tcpKeepAliveInterval  = time.Second
)

// newClient is an etcd client of the agent: with etcd auth, the agent
// user's.
func newClient(o Options, endpoints []string, autoSync time.Duration) (*clientv3.Client, error) {
	return newClientAs(o, endpoints, autoSync, asAgent)
}

// newClientAs is an etcd client as user (see etcdauth.go); dial adds to
// its dial options.
func newClientAs(o Options, endpoints []string, autoSync time.Duration, user etcdUser, dial ...grpc.DialOption) (*clientv3.Client, error) {
	cfg := clientv3.Config{
		Endpoints:            endpoints,
		DialTimeout:          5 * time.Second,
		DialKeepAliveTime:    clientPingInterval,
		DialKeepAliveTimeout: clientDeadLinkTimeout,
		DialOptions:          append([]grpc.DialOption{grpc.WithContextDialer(dialMember)}, dial...),
		AutoSyncInterval:     autoSync,
		Logger:               clientLogger(o),
	}
	o.setUser(&cfg, user)
	if err := clientTLS(&cfg, o.TLS); err != nil {
		return nil, err
	}
	cli, err := clientv3.New(cfg)
	if err == nil && o.creds != nil && user == asAgent {
		go keepWatchTokens(cli, o.Namespace+"etcd-auth-keepalive", o.tokenTTL())
	}
	return cli, err
}

// tokenTTL is etcd's simple-token TTL on the members.
func (o Options) tokenTTL() time.Duration {
	if o.authTokenTTL > 0 {
		return time.Duration(o.authTokenTTL) * time.Second
	}
	return 300 * time.Second // etcd's default; the members keep it
}

// dialMember opens a connection to a member with TCP keepalive probes
// every tcpKeepAliveInterval after tcpKeepAliveIdle of silence. addr is
// what clientv3's resolver gives gRPC: host:port, or a unix socket as
// unix:path or unix://absolute-path.
func dialMember(ctx context.Context, addr string) (net.Conn, error) {
	d := net.Dialer{KeepAliveConfig: net.KeepAliveConfig{
		Enable:   true,
		Idle:     tcpKeepAliveIdle,
		Interval: tcpKeepAliveInterval,
		Count:    3,
	}}
	if path, ok := strings.CutPrefix(addr, "unix://"); ok {
		return d.DialContext(ctx, "unix", path)
	}
	if path, ok := strings.CutPrefix(addr, "unix:"); ok {
		return d.DialContext(ctx, "unix", path)
	}
	return d.DialContext(ctx, "tcp", addr)
}

func startExternal(ctx context.Context, o Options) (*Node, error) {
	cli, err := newClient(o, o.Endpoints, 0)
	if err != nil {
		return nil, fmt.Errorf("%w at %s: %v", ErrUnreachable, strings.Join(o.Endpoints, ","), err)
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := cli.MemberList(cctx); err != nil {
		cli.Close()
		if terr := tlsRefusal(ctx, o.TLS, o.Endpoints); terr != nil {
			err = terr
		}
		return nil, fmt.Errorf("%w at %s: %v; check --endpoints", ErrUnreachable, strings.Join(o.Endpoints, ","), err)
	}
	n := newNode(o, cluster.RoleExternal)
	n.client = cli
	return n, nil
}

// promotedBefore asks the cluster whether a voter already has this host's
// peer URL and name: the trace of a join that completed in etcd but was
// killed before it recorded its state.
func promotedBefore(ctx context.Context, o Options) bool {
	cli, err := reachCluster(ctx, o, o.Join)
	if err != nil {
		return false
	}
	defer cli.Close()
	lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	ml, err := cli.MemberList(lctx)
	if err != nil {
		return false
	}
	for _, m := range ml.Members {
		if hasPeerURL(m, o.PeerURL) && !m.IsLearner && (m.Name == "" || m.Name == o.Name) {
			return true
		}
	}
	return false
}
