// Package agent wires one beacon agent: its configuration, its part of the
// cluster (embedded), its gRPC API (apiserver and the services), its HTTP
// endpoints, its node record, and its lifecycle from start to leave.
package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/beaconhq/beacon/acl"
	"github.com/beaconhq/beacon/api/beaconpb"
	"github.com/beaconhq/beacon/apiserver"
	"github.com/beaconhq/beacon/cluster"
	"github.com/beaconhq/beacon/config"
	"github.com/beaconhq/beacon/dataquota"
	"github.com/beaconhq/beacon/dnsserver"
	"github.com/beaconhq/beacon/embedded"
	"github.com/beaconhq/beacon/registry"
	"github.com/beaconhq/beacon/session"
	"github.com/beaconhq/beacon/version"
	"github.com/prometheus/client_golang/prometheus"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// shutdownGrace bounds each step of a graceful stop.
const shutdownGrace = 3 * time.Second

// Agent is one running agent.
type Agent struct {
	cfg       Config
	lg        *zap.Logger
	node      *embedded.Node
	api       *apiserver.Server
	apiAddr   string         // the API's bound TCP address
	apiLis    []net.Listener // with TLS: the API listeners the agent bound itself
	http      *http.Server
	announcer *cluster.Announcer
	gate      *acl.Gate    // the API's ACL check, made before etcd is up
	acl       *acl.Runtime // the tokens behind the gate, once etcd is up
	// releaseRoot closes the Cluster service's etcd client (root's, under
	// etcd auth).
	releaseRoot func()

	sessions  *session.Manager
	agentSess *session.Session
	catalog   *registry.Catalog
	local     *registry.Local
	dns       *dnsserver.Server
	lateCat   *lateCatalog
	templates *config.Templates
	bg        context.Context      // the background work's: the catalog watch, anti-entropy, the data quota's readings
	cancelBG  context.CancelFunc   // ends bg
	metrics   *prometheus.Registry // the collectors of the agent's parts
	quota     *dataquota.Guard     // judges what API calls write to etcd (dataquota/)
	cli       *clientv3.Client     // the node's LocalClient, its KV guarded by quota: the API's services' client

	recipeStops []func() // of the recipes started, in start order

	leaveMu sync.Mutex
	left    chan struct{} // closed once the agent has left the cluster
	// quiesced is closed when everything has stopped and freed its ports
	// but the API's open connections (and the ACL gate they call): the
	// API goes last so that a Leave call can answer when the agent is as
	// good as gone.
	quiesced    chan struct{}
	quiesceOnce sync.Once
}

// Run starts the agent and blocks until it stops: on SIGINT or SIGTERM, on
// ctx's end, after a leave, or when its member stops on its own. It returns
// nil for a requested stop and a one-line error otherwise. On SIGHUP it
// calls reload (if not nil) and applies the services: blocks it returns.
func Run(ctx context.Context, cfg Config, lg *zap.Logger, reload func() (Config, error)) error {
	a := &Agent{cfg: cfg, lg: lg, left: make(chan struct{}), quiesced: make(chan struct{}), metrics: prometheus.NewRegistry()}
	// Before the data dir exists: a certificate that cannot serve stops
	// the agent with nothing created.
	if err := checkTLS(&cfg); err != nil {
		return err
	}
	// A first start with a port in use leaves no data dir behind either.
	// (With a data dir already there, its lock is checked first: another
	// agent on the same dir is the likelier cause, and says so.)
	if _, err := os.Stat(cfg.DataDir); errors.Is(err, os.ErrNotExist) {
		if err := checkPorts(cfg); err != nil {
			return err
		}
	}
	lock, err := lockDataDir(cfg.DataDir)
	if err != nil {
		return err
	}
	defer lock.Close()

	// Signals are caught from the start, so that an interrupt during a
	// join ends the join cleanly (its learner removed) instead of killing
	// the process half-way.
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	hups := make(chan os.Signal, 1)
	signal.Notify(hups, syscall.SIGHUP)
	defer signal.Stop(hups)

	startCtx, cancelStart := context.WithCancel(ctx)
	started := make(chan struct{})
	interrupted := make(chan struct{})
	go func() {
		select {
		case sig := <-sigs:
			lg.Info("interrupted while starting", zap.String("signal", sig.String()))
			close(interrupted)
			cancelStart()
		case <-started:
		}
	}()
	err = a.start(startCtx)
	close(started)
	if err != nil {
		cancelStart()
		a.stop()
		select {
		case <-interrupted:
			return errors.New("interrupted while starting; nothing was left half-done")
		default:
		}
		return err
	}
	defer cancelStart()
	lg.Info("agent ready", zap.String("name", cfg.Name), zap.String("role", string(a.node.Role())),
		zap.String("api", cfg.APIAddr), zap.String("http", cfg.HTTPAddr), zap.String("dns", cfg.DNSAddr),
		zap.String("client-url", cfg.ClientURL))

	var runErr error
wait:
	select {
	case <-hups:
		a.reloadServices(reload)
		goto wait
	case <-ctx.Done():
	case sig := <-sigs:
		lg.Info("stopping", zap.String("signal", sig.String()))
		if sig == syscall.SIGTERM && cfg.LeaveOnTerminate {
			lctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			if msg, err := a.Leave(lctx); err != nil {
				lg.Warn("leave-on-terminate: not leaving", zap.Error(err))
			} else {
				lg.Info(msg)
			}
			cancel()
		}
	case <-a.left:
	case <-a.node.Done():
		runErr = a.node.Err()
	}
	a.stop()
	if runErr == nil {
		lg.Info("agent stopped")
	}
	return runErr
}

func (a *Agent) start(ctx context.Context) error {
	cfg := a.cfg
	// Bind the agent's own listeners and probe etcd's ports first, so a
	// port in use stops the agent with its key named and nothing started.
	a.gate = acl.NewGate(cfg.ACL, cfg.Namespace)
	var err error
	a.quota, err = dataquota.New(cfg.DataQuotaPercent, dataquota.WithClientPercent(cfg.ClientQuotaPercent), dataquota.WithLogger(a.lg.Named("dataquota")))
	if err != nil {
		return err
	}
	a.api = apiserver.New(a.lg.Named("api"), apiserver.WithACL(a.gate), apiserver.WithDataQuota(a.quota),
		apiserver.WithLimits(apiserver.Limits{MaxStreamsPerConn: cfg.MaxStreamsPerConn, MaxSessionsPerConn: cfg.MaxSessionsPerConn,
			MaxConns: cfg.MaxConns, MaxConnsPerClient: cfg.MaxConnsPerClient, MaxStreams: cfg.MaxStreams,
			HandshakeTimeout: cfg.APIHandshakeTimeout}))
	if err := a.listenAPI(); err != nil {
		return err
	}
	var httpLis net.Listener
	httpLis, err = a.listenHTTP()
	if err != nil {
		return err
	}
	if err := a.listenDNS(); err != nil {
		httpLis.Close()
		return err
	}
	if err := checkEtcdPorts(cfg); err != nil {
		httpLis.Close()
		return err
	}

	a.node, err = embedded.Start(ctx, embedded.Options{
		Name: cfg.Name, DataDir: cfg.DataDir, Role: cfg.Role,
		ClientURL: cfg.ClientURL, PeerURL: cfg.PeerURL,
		InitialCluster: cfg.InitialCluster, ClusterToken: cfg.ClusterToken, Join: cfg.Join, Endpoints: cfg.Endpoints,
		Voters: cfg.Voters, Namespace: cfg.Namespace,
		LogLevel: cfg.LogLevel, Logger: a.lg,
		TLS: cfg.TLS, EnableDebug: cfg.EnableDebug,
		ACL: cfg.ACL, EtcdCredentialsFile: cfg.EtcdCredentialsFile,
		SnapshotCount: cfg.EtcdSnapshotCount, SnapshotCatchUpEntries: cfg.EtcdSnapshotCatchUpEntries,
		QuotaBackendBytes: cfg.EtcdQuotaBackendBytes,
	})
	if err != nil {
		httpLis.Close()
		return err
	}

	if err := a.startRegistry(ctx); err != nil {
		httpLis.Close()
		return err
	}
	a.metrics.MustRegister(a.quota.Metrics())
	every := dataquota.ProxyInterval
	if a.node.Role() == cluster.RoleMember {
		every = dataquota.MemberInterval
	}
	go a.quota.Run(a.bg, a.node.BackendStatus, every)
	// Before Serve: with ACLs on, the API serves nothing until it can
	// check a call.
	a.acl, err = acl.Start(ctx, a.gate, a.api.GRPC(), a.node.LocalClient(), cfg.Namespace, acl.WithLogger(a.lg.Named("acl")))
	if err != nil {
		httpLis.Close()
		return err
	}
	a.announcer = cluster.Announce(a.node.Client(), cfg.Namespace, a.nodeInfo(), cfg.NodeTTL, a.lg.Named("node"))
	// Membership changes (RemoveMember, force-leave) are etcd root's.
	membership, release, err := a.node.RootClient()
	if err != nil {
		httpLis.Close()
		return err
	}
	a.releaseRoot = release
	beaconpb.RegisterClusterServer(a.api.GRPC(), cluster.NewService(membership, cfg.Namespace, a))
	beaconpb.RegisterSessionServer(a.api.GRPC(), session.NewService(a.sessions))
	beaconpb.RegisterRegistryServer(a.api.GRPC(), registry.NewService(a.local, a.catalog))
	a.startRecipes()
	a.templates = newTemplates(a.node.LocalClient(), cfg.Namespace, a.lg)
	a.templates.Sync(cfg.Templates)
	a.api.Serve()
	a.serveAPI()
	a.dns.Serve()
	a.http = &http.Server{Handler: a.httpHandler(), ReadHeaderTimeout: 5 * time.Second,
		// A refused TLS handshake (no certificate, another CA's) is
		// worth a line in the agent's log, not on raw stderr.
		ErrorLog: httpErrorLog(a.lg.Named("http"))}
	go func() { _ = a.http.Serve(httpLis) }()
	return nil
}

func (a *Agent) nodeInfo() cluster.NodeInfo {
	host := "127.0.0.1"
	if u, err := url.Parse(a.cfg.ClientURL); err == nil && a.node.Role() != cluster.RoleExternal {
		host = u.Hostname()
	}
	info := cluster.NodeInfo{
		Name: a.cfg.Name, Address: host, Role: a.node.Role(), Version: version.String(),
		Started: time.Now().UTC().Format(time.RFC3339), APIAddr: a.apiAddr,
		HTTPAddr: a.cfg.HTTPAddr, DNSAddr: a.cfg.DNSAddr,
	}
	if a.node.Role() != cluster.RoleExternal {
		info.ClientURL = a.cfg.ClientURL
	}
	if a.node.Role() == cluster.RoleMember {
		info.PeerURL = a.cfg.PeerURL
	}
	return info
}

// stop takes everything down in the reverse order of start; each step is
// bounded so that a stop finishes within a few seconds.
func (a *Agent) stop() {
	if a.dns != nil {
		ctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
		_ = a.dns.Shutdown(ctx)
		cancel()
	}
	if a.templates != nil {
		a.templates.Close()
	}
	if a.local != nil {
		a.local.Close()
	}
	// Closing the sessions revokes their leases: this host's instances
	// leave every agent's answers now, not after a TTL.
	if a.sessions != nil {
		a.sessions.CloseAll(shutdownGrace)
	}
	a.stopRecipes()
	if a.cancelBG != nil {
		a.cancelBG()
	}
	a.leaveMu.Lock()
	announcer := a.announcer
	a.leaveMu.Unlock()
	if announcer != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		announcer.Stop(ctx)
		cancel()
	}
	if a.http != nil {
		ctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
		_ = a.http.Shutdown(ctx)
		cancel()
	}
	if a.releaseRoot != nil {
		a.releaseRoot()
	}
	if a.node != nil {
		a.node.Close()
	}
	if a.api != nil {
		a.api.CloseListeners()
		a.closeAPIListeners()
	}
	a.quiesceOnce.Do(func() { close(a.quiesced) })
	if a.api != nil {
		a.api.Stop(shutdownGrace)
		a.closeAPIListeners()
	}
	a.acl.Close()
}

// WaitStopped waits until the agent has stopped everything and freed
// every port, its API's included, but for the API connections still open,
// which close right after: a Leave call answers only then.
func (a *Agent) WaitStopped(ctx context.Context) error {
	select {
	case <-a.quiesced:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Name is the agent's node name.
func (a *Agent) Name() string { return a.cfg.Name }

// Role is the role the agent ended up in: member, proxy or external.
func (a *Agent) Role() cluster.Role { return a.node.Role() }

// Leave removes the agent from the cluster and makes Run return. A member
// leaves only when the voters that remain keep a healthy quorum.
func (a *Agent) Leave(ctx context.Context) (string, error) {
	a.leaveMu.Lock()
	defer a.leaveMu.Unlock()
	select {
	case <-a.left:
		return a.cfg.Name + " is already leaving", nil
	default:
	}
	msg, err := a.leave(ctx)
	if err == nil {
		close(a.left)
	}
	return msg, err
}

func (a *Agent) leave(ctx context.Context) (string, error) {
	if a.node.Role() != cluster.RoleMember {
		a.announcer.Stop(ctx)
		return fmt.Sprintf("%s (%s) left the cluster", a.cfg.Name, a.node.Role()), nil
	}
	id := a.node.MemberID()
	// The membership change needs etcd's root under etcd auth.
	cli, release, err := a.node.RootClient()
	if err != nil {
		return "", err
	}
	defer release()
	// Under the membership lock: two voters leaving at once could each see
	// quorum kept and together break it.
	// Fenced: if the lock's lease lapses mid-way, ctx ends and RemoveMember
	// checks the lock still holds before it acts.
	err = cluster.WithFencedMembershipLock(ctx, cli, a.cfg.Namespace, func(ctx context.Context) error {
		if err := cluster.CheckLeave(ctx, cli, id); err != nil {
			return err
		}
		// Withdraw the node record while this member can still write.
		a.announcer.Stop(ctx)
		a.node.SetLeaving(true)
		var opts []cluster.RemoveOption
		if a.cfg.TLS != nil {
			tc, err := a.cfg.TLS.ClientConfig()
			if err != nil {
				return err
			}
			opts = append(opts, cluster.WithTLS(tc))
		}
		if user, password, ok := a.node.RootUser(); ok {
			opts = append(opts, cluster.WithUser(user, password))
		}
		if err := cluster.RemoveMember(ctx, cli, id, opts...); err != nil {
			a.node.SetLeaving(false)
			a.announcer = cluster.Announce(a.node.Client(), a.cfg.Namespace, a.nodeInfo(), a.cfg.NodeTTL, a.lg.Named("node"))
			return err
		}
		return nil
	})
	if err != nil {
		return "", err
	}
	if err := a.node.MarkLeft(); err != nil {
		a.lg.Warn("could not record the leave in the data dir", zap.Error(err))
	}
	return fmt.Sprintf("%s left the cluster; its data dir %s can no longer be resumed", a.cfg.Name, a.cfg.DataDir), nil
}
