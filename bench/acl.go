package bench

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/beaconhq/beacon/acl"
	"github.com/beaconhq/beacon/api/beaconpb"
	"github.com/beaconhq/beacon/client"
)

// CompareACL makes `beacon bench lock`, when it starts its own agents,
// run the same workload against an agent with ACLs on too (a scoped
// token on every call, etcd's own auth under the agent), and print both
// and the ratio: the cost of ACLs. Set by `beacon bench --acl`.
var CompareACL bool

// lockACL is `beacon bench --acl lock`: lockTLS's comparison, for ACLs.
func lockACL(ctx context.Context, w io.Writer, o LockOptions) error {
	return lockCompare(ctx, w, o, lockComparison{
		flag:   "--acl",
		names:  [2]string{aclName(false), aclName(true)},
		agents: "one with ACLs on (a lock:bench-*:write token on every call; etcd's auth, the agent as its etcd user)",
		start: func(on bool) (*agentProc, func(), error) {
			return ownAgentACL(ctx, fmt.Sprintf("bench-lock-%d", btoi(on)), on)
		},
		notes: []string{
			"beacon: Lock.Acquire/Release over gRPC through the agent (ACLs: the token checked on every call; the agent",
			"reaches etcd over a socket as its etcd user, where without etcd auth it calls the member in-process).",
			"Mutex: etcd's concurrency.Mutex straight to the member's client URL (ACLs: as the agent's etcd user).",
		},
	})
}

func aclName(on bool) string {
	if on {
		return "ACLs on"
	}
	return "ACLs off"
}

// ownAgentACL is ownAgent, with --acl when on: its management token made
// through its unix socket, and the benchmark's token (lock:bench-*:write)
// made with it; the plain way reaches etcd as the agent's etcd user.
func ownAgentACL(ctx context.Context, name string, on bool) (*agentProc, func(), error) {
	if !on {
		return ownAgent(ctx, name)
	}
	dir, err := os.MkdirTemp("", "beacon-"+name+"-")
	if err != nil {
		return nil, nil, err
	}
	a, err := startAgent(ctx, dir, name, "--acl")
	if err != nil {
		os.RemoveAll(dir)
		return nil, nil, err
	}
	done := func() { stop(a.cmd); os.RemoveAll(dir) }
	if err := a.aclSetup(ctx, filepath.Join(dir, name)); err != nil {
		done()
		return nil, nil, fmt.Errorf("agent %s: %w", name, err)
	}
	return a, done, nil
}

// aclSetup bootstraps the agent's ACLs through the unix socket in its
// data dir, and gives a its token and its etcd credentials.
func (a *agentProc) aclSetup(ctx context.Context, dataDir string) error {
	c, err := client.New("unix:"+filepath.Join(dataDir, "beacon.sock"), client.WithToken(""))
	if err != nil {
		return err
	}
	defer c.Close()
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	svc := beaconpb.NewACLClient(c.Conn())
	if _, err := svc.Bootstrap(cctx, &beaconpb.ACLBootstrapRequest{}); err != nil {
		return fmt.Errorf("acl bootstrap: %w", err)
	}
	tok, err := svc.TokenCreate(cctx, &beaconpb.ACLTokenCreateRequest{Rules: []string{"lock:bench-*:write"}, Description: "beacon bench lock"})
	if err != nil {
		return fmt.Errorf("acl token create: %w", err)
	}
	creds, err := acl.LoadEtcdCredentials(filepath.Join(dataDir, "etcd-credentials.json"))
	if err != nil {
		return err
	}
	a.token, a.etcdUser = tok.Secret, &creds
	return nil
}
