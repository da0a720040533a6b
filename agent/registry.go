package agent

import (
	"context"
	"errors"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/beaconhq/beacon/acl"
	"github.com/beaconhq/beacon/cluster"
	"github.com/beaconhq/beacon/dnsserver"
	"github.com/beaconhq/beacon/internal/fanout"
	"github.com/beaconhq/beacon/registry"
	"github.com/beaconhq/beacon/session"
	"go.uber.org/zap"
)

// nodeAddress is the IP other hosts reach this one at: the host of its
// client URL (an external agent has none of its own: loopback).
func (a *Agent) nodeAddress() string {
	if a.node != nil && a.node.Role() == cluster.RoleExternal {
		return "127.0.0.1"
	}
	if u, err := url.Parse(a.cfg.ClientURL); err == nil {
		return u.Hostname()
	}
	return "127.0.0.1"
}

// listenDNS binds the DNS sockets early, so a port in use stops the agent
// with dns-addr named before the cluster starts. The catalog it reads is
// filled later; until then every name is unknown.
func (a *Agent) listenDNS() error {
	cat := &lateCatalog{}
	srv, err := dnsserver.New(dnsserver.Config{
		Addr: a.cfg.DNSAddr, Domain: a.cfg.Domain, TTL: uint32(a.cfg.DNSTTL / time.Second),
		IncludeWarning: a.cfg.DNSAllowWarning, Recursors: a.cfg.DNSRecursors,
		ForwardAllow: a.cfg.DNSForwardAllow, TCPMaxConns: a.cfg.DNSTCPMaxConns,
		TCPMaxConnsPerClient: a.cfg.DNSTCPMaxConnsPerClient, TCPIdleTimeout: a.cfg.DNSTCPIdleTimeout,
		TCPMaxLifetime: a.cfg.DNSTCPMaxLifetime, TCPMaxQueries: a.cfg.DNSTCPMaxQueries,
	}, acl.FilterDNS(cat, a.cfg.DNSPolicy), dnsserver.WithLogger(a.lg.Named("dns")))
	if err != nil {
		return dnsConfigError(err)
	}
	if err := srv.Listen(); err != nil {
		if errors.Is(err, dnsserver.ErrRecursorIsSelf) {
			return dnsConfigError(err)
		}
		return portError("dns-addr", a.cfg.DNSAddr, err)
	}
	a.dns = srv
	a.lateCat = cat
	a.metrics.MustRegister(srv.Metrics())
	return nil
}

// startRegistry starts sessions, the catalog and this agent's
// registrations, once the cluster is up.
func (a *Agent) startRegistry(ctx context.Context) error {
	// The API's services write through the data quota's guard; the
	// agent's own writes pass it (their contexts are no API call's).
	cli := a.quota.Client(a.node.LocalClient())
	a.cli = cli
	bg, cancel := context.WithCancel(context.Background())
	a.bg, a.cancelBG = bg, cancel

	a.sessions = session.NewManager(cli, session.WithLogger(a.lg.Named("session")), session.WithConfirmClient(a.node.Client()),
		session.WithMaxSessions(a.cfg.MaxSessions),
		// With ACLs on, each token has its share of the sessions.
		session.WithOwner(a.gate.SessionOwner), session.WithMaxSessionsPerOwner(a.cfg.MaxSessionsPerToken))
	var err error
	a.agentSess, err = a.openAgentSession(ctx)
	if err != nil {
		return err
	}
	a.catalog = registry.NewCatalog(cli, a.cfg.Namespace, registry.WithLogger(a.lg.Named("catalog")))
	a.catalog.SetWatchBufferBytes(int64(a.cfg.MaxWatchBufferBytes))
	// Config.Watch and Election.Observe share this client's watches
	// (internal/fanout); their watchers get the same byte bound.
	fanout.For(cli).SetLimits(0, int64(a.cfg.MaxWatchBufferBytes))
	a.lateCat.set(a.catalog)
	a.metrics.MustRegister(a.catalog.Metrics())
	go a.catalog.Run(bg)

	a.local, err = registry.NewLocal(ctx, registry.LocalConfig{
		Client: cli, Namespace: a.cfg.Namespace, Node: a.cfg.Name, NodeAddr: a.nodeAddress(),
		DataDir: a.cfg.DataDir, Sessions: a.sessions, AgentSession: a.agentSess,
		Catalog: a.catalog,
	}, registry.WithLogger(a.lg.Named("registry")), registry.WithAntiEntropyInterval(a.cfg.AntiEntropyInterval))
	if err != nil {
		return err
	}
	a.metrics.MustRegister(a.local.Metrics())
	if err := a.local.SyncConfig(ctx, a.cfg.Services); err != nil {
		a.lg.Warn("some services of the config file were not registered", zap.Error(err))
	}
	// After SyncConfig: the config's blocks are this node's again before
	// anti-entropy looks for leftovers of an earlier run to remove.
	go a.local.RunAntiEntropy(bg)
	return nil
}

// openAgentSession opens the session behind the agent's own
// registrations, waiting for the cluster (a member restarting with its
// peers still down has no quorum yet).
func (a *Agent) openAgentSession(ctx context.Context) (*session.Session, error) {
	for {
		s, err := a.sessions.Open(ctx, "agent:"+a.cfg.Name, a.cfg.NodeTTL)
		if err == nil {
			return s, nil
		}
		a.lg.Info("waiting for the cluster to open the agent's session", zap.Error(err))
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-a.node.Done():
			return nil, a.node.Err()
		case <-time.After(time.Second):
		}
	}
}

// reloadServices re-reads the config file on SIGHUP and applies its
// services: and templates: blocks. Other keys need a restart.
func (a *Agent) reloadServices(reload func() (Config, error)) {
	if reload == nil || a.local == nil {
		return
	}
	cfg, err := reload()
	if err != nil {
		a.lg.Error("SIGHUP: config not reloaded", zap.Error(err))
		return
	}
	if changed := a.cfg.changedKeys(cfg); len(changed) > 0 {
		// Only services: and templates: apply on a reload; saying nothing
		// of the rest would let a user believe the new values in force.
		a.lg.Warn("SIGHUP: changed keys take effect only after a restart; still running with their old values",
			zap.Strings("keys", changed))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if a.templates != nil {
		a.templates.Sync(cfg.Templates)
	}
	if err := a.local.SyncConfig(ctx, cfg.Services); err != nil {
		a.lg.Error("SIGHUP: services reloaded with errors", zap.Error(err))
		return
	}
	a.lg.Info("SIGHUP: services reloaded", zap.Int("services", len(cfg.Services)))
}

// lateCatalog lets the DNS server bind before the catalog exists: until
// then it knows no names.
type lateCatalog struct {
	p atomic.Pointer[registry.Catalog]
}

func (l *lateCatalog) set(c *registry.Catalog) { l.p.Store(c) }

func (l *lateCatalog) Service(name string) []*registry.Instance {
	if c := l.p.Load(); c != nil {
		return c.Service(name)
	}
	return nil
}

func (l *lateCatalog) Node(name string) (cluster.NodeInfo, bool) {
	if c := l.p.Load(); c != nil {
		return c.Node(name)
	}
	return cluster.NodeInfo{}, false
}

// dnsConfigError names the config key a DNS server error is about.
func dnsConfigError(err error) error {
	switch {
	case errors.Is(err, dnsserver.ErrRecursorIsSelf):
		return &ConfigError{Key: "dns-recursors", Err: err}
	case strings.HasPrefix(err.Error(), "dns-forward-allow:"):
		return &ConfigError{Key: "dns-forward-allow", Err: errors.New(strings.TrimSpace(strings.TrimPrefix(err.Error(), "dns-forward-allow:")))}
	}
	return &ConfigError{Key: "dns-addr", Err: err}
}
