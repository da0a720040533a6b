package embedded

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"github.com/beaconhq/beacon/cluster"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.etcd.io/etcd/server/v3/etcdserver/api/v3client"
	"go.uber.org/zap"
)

// etcdConfig is the embedded member's configuration shared by bootstrap,
// join and resume.
func etcdConfig(o Options, lg *zap.Logger) (*embed.Config, error) {
	cu, err := url.Parse(o.ClientURL)
	if err != nil {
		return nil, err
	}
	pu, err := url.Parse(o.PeerURL)
	if err != nil {
		return nil, err
	}
	cfg := embed.NewConfig()
	cfg.Name = o.Name
	cfg.Dir = etcdDir(o.DataDir)
	cfg.ListenClientUrls = []url.URL{*cu}
	cfg.AdvertiseClientUrls = []url.URL{*cu}
	cfg.ListenPeerUrls = []url.URL{*pu}
	cfg.AdvertisePeerUrls = []url.URL{*pu}
	cfg.InitialCluster = o.Name + "=" + o.PeerURL
	cfg.LogLevel = o.LogLevel
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(quietEtcd(lg, o.LogLevel))
	// Keep an hour of history for watchers that fall behind; older revisions
	// are compacted so the database does not grow without bound.
	cfg.AutoCompactionMode = embed.CompactorModePeriodic
	cfg.AutoCompactionRetention = "1h"
	// Ping quiet clients every second (etcd's default: every 2 h): an
	// agent's connection to this member, a watch's included, then hears
	// from it every second, so the agent's TCP keepalive (a probe after a
	// second of silence, see newClient) finds the member gone silent within
	// about 2 s without closing a healthy connection for one lost packet.
	// The client's own pings stay at gRPC's 10 s, above etcd's
	// GRPCKeepAliveMinTime (5 s): nothing is refused with too_many_pings.
	cfg.GRPCKeepAliveInterval = memberPingInterval
	if o.authTokenTTL > 0 {
		cfg.AuthTokenTTL = o.authTokenTTL
	}
	applyRaftLog(cfg, o)
	applyQuota(cfg, o)
	applyTLS(cfg, o.TLS)
	applyDebug(cfg, o.EnableDebug)
	return cfg, nil
}

// memberPingInterval is how often the member pings a client connection
// that has been quiet that long: gRPC's floor for servers.
const memberPingInterval = time.Second

// startEtcd starts the member and ties the node's lifecycle to it.
func startEtcd(o Options, cfg *embed.Config, cause *stopCauseValue) (*Node, error) {
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, fmt.Errorf("starting etcd: %v", err)
	}
	n := newNode(o, cluster.RoleMember)
	n.etcd = e
	n.stopCause = cause
	n.memberID = uint64(e.Server.MemberID())
	go func() {
		select {
		case <-e.Server.StopNotify():
		case <-e.Err():
		}
		close(n.done)
	}()
	if o.creds != nil {
		// Under etcd auth the client waits for the member to serve
		// (connectWithAuth): it must authenticate, which a learner, or a
		// member without quorum, cannot answer.
		return n, nil
	}
	cli, err := newClient(o, []string{o.ClientURL}, 0)
	if err != nil {
		e.Close()
		return nil, err
	}
	n.client = cli
	n.inproc = v3client.New(e.Server)
	n.local = localClient(n.inproc, cli)
	return n, nil
}

// localClient is the client the agent's own work goes through: KV, Lease,
// Cluster, Maintenance and Auth calls straight into the embedded server
// (inproc: no socket, no serialisation), but watches through sock, a real
// gRPC connection to the same member. KV and Lease, which API calls reach
// with their contexts, hide the API's caller from etcd (callerpeer.go).
//
// Why watches never use the in-process transport: its streams are
// unbuffered channels, and clientv3's watch stream has one goroutine that
// both sends create/cancel requests and dispatches the server's
// responses. When watches are opened and cancelled quickly (a storm of
// API watch streams), that goroutine blocks sending a cancel to etcd's
// receive loop, which blocks handing the request to its full control
// queue, whose send loop blocks delivering a response to the client's
// receive loop, which blocks handing it to the first goroutine: a cycle
// that never breaks (etcd-io/etcd#18879, #20716). Every watch of the
// process shares that one stream, so the catalog's watch froze with it,
// and closing the client waited on it forever. A socket has HTTP/2 flow
// control windows in between, so a send does not wait for the other side
// to read, and the cycle cannot close.
func localClient(inproc, sock *clientv3.Client) *clientv3.Client {
	c := clientv3.NewCtxClient(context.Background(), clientv3.WithZapLogger(inproc.GetLogger()))
	c.KV, c.Lease = ownKV{inproc.KV}, ownLease{inproc.Lease}
	c.Cluster, c.Maintenance, c.Auth = inproc.Cluster, inproc.Maintenance, inproc.Auth
	c.Watcher = sock.Watcher
	return c
}

// waitReady waits until the member has joined raft and serves, or stops.
func (n *Node) waitReady(ctx context.Context) error {
	select {
	case <-n.etcd.Server.ReadyNotify():
		return nil
	case <-n.done:
		return n.Err()
	case <-ctx.Done():
		return ctx.Err()
	}
}

// bootstrapMember starts a new cluster: one member, or the static set of
// --initial-cluster. It returns without waiting for quorum, so that the
// agent serves while the other initial members are still starting.
func bootstrapMember(ctx context.Context, o Options) (*Node, error) {
	lg, cause := newStopCause(o.Logger.Named("etcd"))
	cfg, err := etcdConfig(o, lg)
	if err != nil {
		return nil, err
	}
	cfg.ClusterState = embed.ClusterStateFlagNew
	if o.InitialCluster != "" {
		cfg.InitialCluster = o.InitialCluster
		// Every initial member must derive the same cluster id.
		cfg.InitialClusterToken = o.ClusterToken
	} else {
		// A lone new cluster gets its own token, so that two clusters
		// created on the same addresses never share a cluster id.
		cfg.InitialClusterToken = "beacon-" + randomHex(8)
	}
	n, err := startEtcd(o, cfg, cause)
	if err != nil {
		return nil, err
	}
	if o.InitialCluster == "" {
		if err := n.waitReady(ctx); err != nil {
			n.Close()
			return nil, err
		}
	}
	if err := n.connectWithAuth(ctx, firstOfCluster(o)); err != nil {
		n.Close()
		return nil, err
	}
	go n.saveStateWhenReady(context.Background())
	return n, nil
}

// resumeMember restarts the member whose data is in the data dir, after
// checking that the data is this node's and that its cluster still has it.
func resumeMember(ctx context.Context, o Options) (*Node, error) {
	st, err := readState(o.DataDir)
	if err != nil {
		return nil, err
	}
	if st != nil {
		if st.Name != "" && st.Name != o.Name {
			return nil, fmt.Errorf("%w: %s holds member %q, but this node is named %q; start with --name %s or use another --data-dir",
				ErrNameMismatch, o.DataDir, st.Name, o.Name, st.Name)
		}
		if st.Left {
			return nil, fmt.Errorf("%w: %s left the cluster with beacon leave; delete %s (or use another --data-dir) and start with --join to come back",
				ErrRemoved, o.Name, o.DataDir)
		}
		if err := verifyMembership(ctx, o, st); err != nil {
			return nil, err
		}
	}
	lg, cause := newStopCause(o.Logger.Named("etcd"))
	cfg, err := etcdConfig(o, lg)
	if err != nil {
		return nil, err
	}
	cfg.ClusterState = embed.ClusterStateFlagExisting
	n, err := startEtcd(o, cfg, cause)
	if err != nil {
		return nil, err
	}
	if err := n.connectWithAuth(ctx, true); err != nil {
		n.Close()
		return nil, err
	}
	go n.saveStateWhenReady(context.Background())
	return n, nil
}

// verifyMembership asks the cluster this member last saw (and --join, if
// given) whether it is the same cluster and still lists this member.
// An unreachable cluster is no verdict: the whole cluster may be restarting.
func verifyMembership(ctx context.Context, o Options, st *stateFile) error {
	var eps []string
	for _, ep := range append(append([]string{}, o.Join...), st.Endpoints...) {
		if ep != o.ClientURL && ep != st.ClientURL {
			eps = append(eps, ep)
		}
	}
	if len(eps) == 0 || st.ClusterID == "" {
		return nil
	}
	cli, err := newClient(o, eps, 0)
	if err != nil {
		return nil
	}
	defer cli.Close()
	cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	resp, err := cli.MemberList(cctx)
	if err != nil {
		return nil
	}
	cluster := fmt.Sprintf("%x", resp.Header.ClusterId)
	if cluster != st.ClusterID {
		return fmt.Errorf("%w: %s holds a member of cluster %s, but the cluster at %s is %s; use another --data-dir, or delete %s to join as a new member",
			ErrForeignDataDir, o.DataDir, st.ClusterID, strings.Join(eps, ","), cluster, o.DataDir)
	}
	for _, m := range resp.Members {
		if fmt.Sprintf("%x", m.ID) == st.MemberID {
			return nil
		}
	}
	return fmt.Errorf("%w: member %s (%s) is no longer in cluster %s; delete %s (or use another --data-dir) and start with --join to come back as a new member",
		ErrRemoved, o.Name, st.MemberID, cluster, o.DataDir)
}

// saveStateWhenReady records the member's identity once it serves, and the
// cluster's client URLs, for verifyMembership on the next start.
func (n *Node) saveStateWhenReady(ctx context.Context) {
	if n.waitReady(ctx) != nil {
		return
	}
	if err := n.saveState(ctx); err != nil {
		n.opts.Logger.Warn("could not record cluster state in the data dir", zap.Error(err))
	}
}

// learnerApplyWait bounds how long saveState waits for the local member
// to apply its own promotion.
const learnerApplyWait = 30 * time.Second

// saveState writes what this node knows of its cluster to the data dir.
//
// Right after a join the local member may not have applied its own
// promotion yet and refuses MemberList as a learner; it is asked again
// until it has (within learnerApplyWait). Giving up there would leave a
// member's data without a state file, which the next start takes for an
// interrupted join and discards.
func (n *Node) saveState(ctx context.Context) error {
	cctx, cancel := context.WithTimeout(ctx, learnerApplyWait)
	defer cancel()
	var resp *clientv3.MemberListResponse
	var err error
	for {
		resp, err = n.client.MemberList(cctx)
		if err == nil || rpctypes.ErrorDesc(err) != rpctypes.ErrorDesc(rpctypes.ErrGRPCNotSupportedForLearner) {
			break
		}
		select {
		case <-cctx.Done():
			return fmt.Errorf("the member still acts as a learner after %s: %w", learnerApplyWait, err)
		case <-time.After(100 * time.Millisecond):
		}
	}
	if err != nil {
		return err
	}
	st := &stateFile{
		Name:      n.opts.Name,
		Role:      n.role,
		ClusterID: fmt.Sprintf("%x", resp.Header.ClusterId),
		PeerURL:   n.opts.PeerURL,
		ClientURL: n.opts.ClientURL,
	}
	if n.memberID != 0 {
		st.MemberID = strconv.FormatUint(n.memberID, 16)
	}
	for _, m := range resp.Members {
		st.Endpoints = append(st.Endpoints, m.ClientURLs...)
	}
	return writeState(n.opts.DataDir, st)
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return strconv.FormatInt(time.Now().UnixNano(), 16)
	}
	return hex.EncodeToString(b)
}

// removeEtcdData deletes a member's data that never became part of the
// cluster, so that the next start joins afresh instead of resuming it.
func removeEtcdData(dataDir string) error {
	err := os.RemoveAll(etcdDir(dataDir))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return err
}
