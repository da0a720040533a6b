package e2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/beaconhq/beacon/acl"
	"github.com/beaconhq/beacon/internal/testcluster"
	"github.com/miekg/dns"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// copyCredentials puts the first member's etcd credentials file into a
// joiner's data dir, as the README says to, before the joiner starts.
func copyCredentials(t *testing.T, from, to *testcluster.Agent) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(from.DataDir, "etcd-credentials.json"))
	if err != nil {
		t.Fatalf("the first member wrote no credentials file: %v", err)
	}
	if err := os.MkdirAll(to.DataDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(to.DataDir, "etcd-credentials.json"), b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// etcdAs is an etcd client of url: anonymous without creds, else as the
// agent user.
func etcdAs(t *testing.T, url string, creds *acl.EtcdCredentials) *clientv3.Client {
	t.Helper()
	cfg := clientv3.Config{Endpoints: []string{url}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()}
	if creds != nil {
		creds.Agent(&cfg)
	}
	cli, err := clientv3.New(cfg)
	if err != nil {
		t.Fatalf("etcd client of %s: %v", url, err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// TestACLEtcdRBAC: three members and a proxy with --acl. The first member
// turns etcd's auth on and writes the credentials file; the joiners, with
// a copy, join; a raw etcd client without credentials is refused by a
// member's client URL and by the proxy's (a read the agent user made
// through the proxy is not served to it from the proxy's cache); the
// agents register, answer DNS and run `beacon lock` with a token; a
// member leaves (a membership change, etcd root's).
func TestACLEtcdRBAC(t *testing.T) {
	c := testcluster.New(t)
	n1 := c.Host("n1")
	n1.Start("--acl")
	n1.WaitReady(readyWithin)

	// Without the file a joiner stops at once, naming it.
	lone := c.Host("lone")
	lone.Start("--acl", "--join", n1.ClientURL)
	if err := lone.WaitExit(readyWithin); err == nil || !strings.Contains(lone.Log(), "etcd-credentials.json: missing") {
		t.Errorf("a joiner without the credentials file: exit %v, log:\n%s", err, tail(lone.Log(), 5))
	}

	agents := []*testcluster.Agent{n1}
	for _, name := range []string{"n2", "n3", "p1"} {
		a := c.Host(name)
		copyCredentials(t, n1, a)
		args := []string{"--acl", "--join", n1.ClientURL}
		if name == "p1" {
			args = append(args, "--role", "proxy")
		}
		a.Start(args...)
		a.WaitReady(readyWithin)
		agents = append(agents, a)
	}
	n2, n3, p1 := agents[1], agents[2], agents[3]
	out, stderr, err := testcluster.RunCLI(t, "members", "--agent", socketOf(p1))
	if err != nil || strings.Count(out, "voter") != 3 || !strings.Contains(out, "proxy") {
		t.Fatalf("beacon members on p1's socket: %v %s\n%s", err, stderr, out)
	}

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	creds, err := acl.LoadEtcdCredentials(filepath.Join(n1.DataDir, "etcd-credentials.json"))
	if err != nil {
		t.Fatal(err)
	}
	// The agent user reads through the proxy: etcd's kvProxy would keep
	// the answer in its cache.
	agentViaProxy := etcdAs(t, p1.ClientURL, &creds)
	if _, err := agentViaProxy.Get(ctx, "/beacon/nodes/n1"); err != nil {
		t.Fatalf("the agent user through the proxy: %v", err)
	}
	for _, a := range []*testcluster.Agent{n2, p1} {
		raw := etcdAs(t, a.ClientURL, nil)
		if _, err := raw.Put(ctx, "/beacon/services/web/evil", `{"address":"6.6.6.6"}`); !etcdRefused(err) {
			t.Errorf("a raw put through %s: %v; want it refused", a.Name, err)
		}
		if _, err := raw.Get(ctx, "/beacon/nodes/n1", clientv3.WithSerializable()); !etcdRefused(err) {
			t.Errorf("a raw serializable get through %s: %v; want it refused", a.Name, err)
		}
		if _, err := raw.Get(ctx, "/beacon/", clientv3.WithPrefix()); !etcdRefused(err) {
			t.Errorf("a raw get through %s: %v; want it refused", a.Name, err)
		}
	}

	mgmt := aclBootstrap(t, n1)
	lockTok := aclCreate(t, n1, mgmt.Secret, "lock:batch-*:write")
	svcTok := aclCreate(t, n2, mgmt.Secret, "service:web:write")
	wantCLIRan(t, n2, "registered", "register", "--token", svcTok.Secret, "--name", "web", "--port", "8080")
	waitDNS(t, p1, "web.service.beacon", dns.TypeSRV, "web's SRV on the proxy", has("8080 n2-web-8080.web.service.beacon."))
	for _, a := range []*testcluster.Agent{p1, n3} {
		wantCLIRan(t, a, "ran on "+a.Name, "lock", "batch-1", "--token", lockTok.Secret, "--", "echo", "ran on "+a.Name)
		wantCLIRefused(t, a, []string{"permission denied", "lock:payments:write"}, "lock", "payments", "--token", lockTok.Secret, "--", "true")
	}

	// A leave is a membership change: root's.
	wantCLIRan(t, n3, "left the cluster", "leave", "--token", mgmt.Secret)
	if err := n3.WaitExit(30 * time.Second); err != nil {
		t.Errorf("n3 after leaving: %v", err)
	}
	err = testcluster.Eventually(readyWithin, func() error {
		out, _, err := testcluster.RunCLI(t, "members", "--agent", socketOf(n1))
		if err != nil || strings.Count(out, "voter") != 2 || strings.Contains(out, "n3") {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	})
	if err != nil {
		t.Errorf("after n3 left: %v", err)
	}
}

// etcdRefused: etcd answered that the caller has no user, or no permission.
func etcdRefused(err error) bool {
	return errors.Is(err, rpctypes.ErrUserEmpty) || errors.Is(err, rpctypes.ErrPermissionDenied) ||
		err != nil && (strings.Contains(err.Error(), "user name is empty") || strings.Contains(err.Error(), "permission denied"))
}

// TestACLStaticCluster: a static --initial-cluster with --acl. The first
// member listed writes the credentials file as it starts (before it has a
// quorum); the others start with a copy; whichever turns etcd's auth on,
// the cluster converges on one set of users: every member serves, a raw
// client is refused, and a scoped token takes its lock on every member.
func TestACLStaticCluster(t *testing.T) {
	c := testcluster.New(t)
	var ms []*testcluster.Agent
	for _, name := range []string{"n1", "n2", "n3"} {
		ms = append(ms, c.Host(name))
	}
	ic := testcluster.InitialCluster(ms...)
	ms[0].Start("--acl", "--initial-cluster", ic)
	file := filepath.Join(ms[0].DataDir, "etcd-credentials.json")
	if err := testcluster.Eventually(readyWithin, func() error { _, err := os.Stat(file); return err }); err != nil {
		t.Fatalf("n1 wrote no credentials file: %v; log:\n%s", err, tail(ms[0].Log(), 10))
	}
	for _, a := range ms[1:] {
		copyCredentials(t, ms[0], a)
		a.Start("--acl", "--initial-cluster", ic)
	}
	for _, a := range ms {
		a.WaitReady(readyWithin)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, a := range ms {
		if _, err := etcdAs(t, a.ClientURL, nil).Put(ctx, "/beacon/x", "y"); !etcdRefused(err) {
			t.Errorf("a raw put through %s: %v; want it refused", a.Name, err)
		}
	}
	mgmt := aclBootstrap(t, ms[1])
	tok := aclCreate(t, ms[1], mgmt.Secret, "lock:batch-*:write")
	// The other agents know the token once their watch of the tokens
	// delivers it.
	for _, a := range ms {
		err := testcluster.Eventually(readyWithin, func() error {
			out, stderr, err := aclCLI(t, a, "lock", "batch-1", "--token", tok.Secret, "--", "echo", "ran on "+a.Name)
			if err != nil || !strings.Contains(out, "ran on "+a.Name) {
				return fmt.Errorf("%v: %s%s", err, out, stderr)
			}
			return nil
		})
		if err != nil {
			t.Errorf("beacon lock batch-1 on %s: %v", a.Name, err)
		}
	}
}
