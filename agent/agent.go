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

	"github.com/beaconhq/beacon/api/beaconpb"
	"github.com/beaconhq/beacon/apiserver"
	"github.com/beaconhq/beacon/cluster"
	"github.com/beaconhq/beacon/embedded"
	"github.com/beaconhq/beacon/version"
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
	http      *http.Server
	announcer *cluster.Announcer

	leaveMu sync.Mutex
	left    chan struct{} // closed once the agent has left the cluster
}

// Run starts the agent and blocks until it stops: on SIGINT or SIGTERM, on
// ctx's end, after a leave, or when its member stops on its own. It returns
// nil for a requested stop and a one-line error otherwise.
func Run(ctx context.Context, cfg Config, lg *zap.Logger) error {
	a := &Agent{cfg: cfg, lg: lg, left: make(chan struct{})}
	lock, err := lockDataDir(cfg.DataDir)
	if err != nil {
		return err
	}
	defer lock.Close()

	if err := a.start(ctx); err != nil {
		a.stop()
		return err
	}
	lg.Info("agent ready", zap.String("name", cfg.Name), zap.String("role", a.node.Role()),
		zap.String("api", cfg.APIAddr), zap.String("http", cfg.HTTPAddr), zap.String("client-url", cfg.ClientURL))

	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)

	var runErr error
	select {
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
	a.api = apiserver.New(a.lg.Named("api"))
	if err := a.api.Listen(cfg.APIAddr, cfg.APISocket); err != nil {
		var oe *net.OpError
		if errors.As(err, &oe) && errors.Is(err, syscall.EADDRINUSE) {
			return portError("api-addr", cfg.APIAddr, err)
		}
		return err
	}
	httpLis, err := a.listenHTTP()
	if err != nil {
		return err
	}
	if cfg.Role != RoleExternal {
		if err := checkFree("client-url", cfg.ClientURL); err != nil {
			httpLis.Close()
			return err
		}
		if cfg.Role != RoleProxy {
			if err := checkFree("peer-url", cfg.PeerURL); err != nil {
				httpLis.Close()
				return err
			}
		}
	}

	a.node, err = embedded.Start(ctx, embedded.Options{
		Name: cfg.Name, DataDir: cfg.DataDir, Role: cfg.Role,
		ClientURL: cfg.ClientURL, PeerURL: cfg.PeerURL,
		InitialCluster: cfg.InitialCluster, Join: cfg.Join, Endpoints: cfg.Endpoints,
		Voters: cfg.Voters, Namespace: cfg.Namespace,
		LogLevel: cfg.LogLevel, Logger: a.lg,
	})
	if err != nil {
		httpLis.Close()
		return err
	}

	beaconpb.RegisterClusterServer(a.api.GRPC(), cluster.NewService(a.node.Client(), cfg.Namespace, a))
	a.api.Serve()
	a.http = &http.Server{Handler: a.httpHandler(), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = a.http.Serve(httpLis) }()

	a.announcer = cluster.Announce(a.node.Client(), cfg.Namespace, a.nodeInfo(), cfg.NodeTTL, a.lg.Named("node"))
	return nil
}

func (a *Agent) nodeInfo() cluster.NodeInfo {
	host := "127.0.0.1"
	if u, err := url.Parse(a.cfg.ClientURL); err == nil && a.node.Role() != embedded.RoleExternal {
		host = u.Hostname()
	}
	info := cluster.NodeInfo{
		Name: a.cfg.Name, Address: host, Role: a.node.Role(), Version: version.String(),
		Started: time.Now().UTC().Format(time.RFC3339), APIAddr: a.api.Addr(),
		HTTPAddr: a.cfg.HTTPAddr, DNSAddr: a.cfg.DNSAddr,
	}
	if a.node.Role() != embedded.RoleExternal {
		info.ClientURL = a.cfg.ClientURL
	}
	if a.node.Role() == embedded.RoleMember {
		info.PeerURL = a.cfg.PeerURL
	}
	return info
}

// stop takes everything down in the reverse order of start; each step is
// bounded so that a stop finishes within a few seconds.
func (a *Agent) stop() {
	if a.announcer != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		a.announcer.Stop(ctx)
		cancel()
	}
	if a.http != nil {
		ctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
		_ = a.http.Shutdown(ctx)
		cancel()
	}
	if a.api != nil {
		a.api.Stop(shutdownGrace)
	}
	if a.node != nil {
		a.node.Close()
	}
}

// Name is the agent's node name.
func (a *Agent) Name() string { return a.cfg.Name }

// Role is the role the agent ended up in: member, proxy or external.
func (a *Agent) Role() string { return a.node.Role() }

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
	if a.node.Role() != embedded.RoleMember {
		a.announcer.Stop(ctx)
		return fmt.Sprintf("%s (%s) left the cluster", a.cfg.Name, a.node.Role()), nil
	}
	id := a.node.MemberID()
	if err := cluster.CheckLeave(ctx, a.node.Client(), id); err != nil {
		return "", err
	}
	// Withdraw the node record while this member can still write.
	a.announcer.Stop(ctx)
	a.node.SetLeaving(true)
	if err := cluster.RemoveMember(ctx, a.node.Client(), id); err != nil {
		a.node.SetLeaving(false)
		a.announcer = cluster.Announce(a.node.Client(), a.cfg.Namespace, a.nodeInfo(), a.cfg.NodeTTL, a.lg.Named("node"))
		return "", err
	}
	if err := a.node.MarkLeft(); err != nil {
		a.lg.Warn("could not record the leave in the data dir", zap.Error(err))
	}
	return fmt.Sprintf("%s left the cluster; its data dir %s can no longer be resumed", a.cfg.Name, a.cfg.DataDir), nil
}
