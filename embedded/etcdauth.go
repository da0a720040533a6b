package embedded

import (
	"context"
	"errors"
	"fmt"
	"github.com/beaconhq/beacon/cluster"
	"strings"
	"time"

	"github.com/beaconhq/beacon/acl"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// etcd's own users, with Options.ACL (see acl/etcdauth.go). The agent's
// clients are the agent user, whose role reads and writes the namespace
// only; membership changes (a join's add and promote, a leave's or a
// force-leave's removal) and turning auth on are the root user's; the
// proxy's backend is nobody: it forwards each caller's own token, so
// that a caller without credentials does not ride on the agent's.
//
// The in-process client (v3client) cannot authenticate (it gets "user
// name is empty" once auth is on), so under auth LocalClient is the
// agent user's socket client.

// etcdUser is who an etcd client of the agent is.
type etcdUser int

const (
	asAgent etcdUser = iota
	asRoot
	asNobody // the proxy's backend: each call carries its caller's token
)

// setUser puts the user's credentials on cfg (nothing without etcd auth).
func (o Options) setUser(cfg *clientv3.Config, u etcdUser) {
	if o.creds == nil {
		return
	}
	switch u {
	case asAgent:
		o.creds.Agent(cfg)
	case asRoot:
		o.creds.Root(cfg)
	}
}

// etcdAuth says whether etcd's auth is on for this node's clients.
func (n *Node) etcdAuth() bool { return n.opts.creds != nil }

// createsCredentials: this start makes a new cluster, so it writes the
// credentials file when there is none. A static cluster's first listed
// member writes it; the others need a copy before they start.
func createsCredentials(o Options) bool {
	if o.Role != cluster.RoleMember && o.Role != cluster.RoleAuto || len(o.Join) > 0 || hasMemberData(o.DataDir) {
		return false
	}
	return firstOfCluster(o)
}

// firstOfCluster: this member starts a new cluster alone, or is the first
// listed in --initial-cluster. It alone turns etcd's auth on: the users'
// passwords set again by another member at the same time would invalidate
// the tokens the first one's clients hold, and a watch stream opened with
// one stays refused ("invalid auth token").
func firstOfCluster(o Options) bool {
	if o.InitialCluster == "" {
		return true
	}
	first, _, _ := strings.Cut(o.InitialCluster, "=")
	return first == o.Name
}

// loadCredentials reads (or, for a new cluster, writes) the credentials
// file before anything starts, so that an agent without it stops at once
// with the file named. An external cluster's users are its operator's.
func loadCredentials(o *Options) error {
	if !o.ACL || o.Role == cluster.RoleExternal {
		return nil
	}
	creds, err := acl.PrepareEtcdCredentials(o.EtcdCredentialsFile, createsCredentials(*o))
	if err != nil {
		return err
	}
	o.creds = &creds
	return nil
}

// connectWithAuth is a member's start under etcd auth, once it serves
// (a quorum is up): with enable (the first member of a new cluster, or a
// member that resumes), auth turned on as root (a no-op when on already);
// otherwise (a joiner, another member of a static cluster) a wait until
// it is on; then the node's client as the agent user.
func (n *Node) connectWithAuth(ctx context.Context, enable bool) error {
	if !n.etcdAuth() || n.client != nil {
		return nil
	}
	n.opts.Logger.Info("waiting for the member to serve, to connect as etcd user " + n.opts.creds.AgentUser)
	if err := n.waitReady(ctx); err != nil {
		return err
	}
	actx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	root, err := connectAs(actx, n.opts, asRoot)
	if err != nil {
		return fmt.Errorf("etcd auth: connecting as root: %w", err)
	}
	if enable {
		err = acl.EnableEtcdAuth(actx, root, n.opts.Namespace, *n.opts.creds)
	} else {
		err = waitEtcdAuth(ctx, root)
	}
	root.Close()
	if err != nil {
		return err
	}
	cli, err := connectAs(actx, n.opts, asAgent)
	if err != nil {
		return fmt.Errorf("etcd auth: connecting as %s: %w", n.opts.creds.AgentUser, err)
	}
	n.client = cli
	return nil
}

// waitEtcdAuth waits, up to two minutes, for the cluster's first member
// to turn etcd's auth on.
func waitEtcdAuth(ctx context.Context, root *clientv3.Client) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	for {
		st, err := root.AuthStatus(ctx)
		if err == nil && st.Enabled {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("etcd auth: the cluster's first member has not turned etcd's auth on (last: %v); is it started with acl too?", err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// connectAs is a client of this member as user. A member just promoted
// may still see itself as a learner for a moment, and a learner answers
// no Authenticate: that is retried until ctx ends.
func connectAs(ctx context.Context, o Options, user etcdUser) (*clientv3.Client, error) {
	for {
		cli, err := newClientAs(o, []string{o.ClientURL}, 0, user)
		if err == nil || !errors.Is(err, rpctypes.ErrGRPCNotSupportedForLearner) && !strings.Contains(err.Error(), "not supported for learner") {
			return cli, err
		}
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// RootUser is etcd's root user and its password; ok is false without
// etcd auth.
func (n *Node) RootUser() (name, password string, ok bool) {
	if !n.etcdAuth() {
		return "", "", false
	}
	return acl.EtcdRootUser, n.opts.creds.RootPassword, true
}

// RootClient is a client for membership changes: with etcd auth, a new
// client as root (release closes it); without, Client (release does
// nothing).
func (n *Node) RootClient() (cli *clientv3.Client, release func(), err error) {
	if !n.etcdAuth() {
		return n.client, func() {}, nil
	}
	cli, err = newClientAs(n.opts, n.client.Endpoints(), 0, asRoot)
	if err != nil {
		return nil, nil, fmt.Errorf("etcd auth: connecting as root: %w", err)
	}
	return cli, func() { cli.Close() }, nil
}
