package acl

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/beaconhq/beacon/api/beaconpb"
	"github.com/beaconhq/beacon/internal/etcdtest"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	"go.uber.org/zap"
)

// Once etcd auth is on, a raw client without credentials is refused; the
// agent user works in the namespace (keys, leases, watches, the agent's
// own services through gRPC) and nowhere else; root still administers.
func TestEtcdAuthRefusesRawClient(t *testing.T) {
	e, url, err := etcdtest.Start(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	raw := etcdtest.Client(t, url)
	ctx := ctxT(t)
	const ns = "/beacon/"
	if _, err := raw.Put(ctx, "/elsewhere/x", "before"); err != nil {
		t.Fatal(err)
	}
	creds := NewEtcdCredentials()
	if err := EnableEtcdAuth(ctx, raw, ns, creds); err != nil {
		t.Fatal(err)
	}
	if err := EnableEtcdAuth(ctx, raw, ns, creds); err != nil { // again: auth is on, nothing to do
		t.Errorf("second EnableEtcdAuth: %v", err)
	}

	// A raw client, fresh or the one that enabled auth, is refused.
	fresh := etcdtest.Client(t, url)
	for name, c := range map[string]*clientv3.Client{"fresh": fresh, "enabler": raw} {
		if _, err := c.Put(ctx, ns+"services/web/evil", `{"address":"6.6.6.6"}`); !errors.Is(err, rpctypes.ErrUserEmpty) && !errors.Is(err, rpctypes.ErrPermissionDenied) {
			t.Errorf("%s client without credentials: put: %v; want refused", name, err)
		}
		if _, err := c.Get(ctx, ns, clientv3.WithPrefix()); err == nil {
			t.Errorf("%s client without credentials: get answered", name)
		}
	}
	wrong := authClient(t, url, func(c *clientv3.Config) { c.Username, c.Password = EtcdAgentUser, "guess" })
	if wrong != nil {
		t.Errorf("the agent user with a wrong password was let in")
	}

	agentCli := authClient(t, url, creds.Agent)
	if agentCli == nil {
		t.Fatal("the agent user was refused")
	}
	if _, err := agentCli.Put(ctx, ns+"config/app/x", "1"); err != nil {
		t.Errorf("agent put in the namespace: %v", err)
	}
	if _, err := agentCli.Put(ctx, "/elsewhere/x", "2"); !errors.Is(err, rpctypes.ErrPermissionDenied) {
		t.Errorf("agent put outside the namespace: %v; want permission denied", err)
	}
	if _, err := agentCli.Get(ctx, "/elsewhere/x"); !errors.Is(err, rpctypes.ErrPermissionDenied) {
		t.Errorf("agent get outside the namespace: %v; want permission denied", err)
	}
	// Leases and an etcd mutex in the namespace: what sessions and locks
	// are made of.
	s, err := concurrency.NewSession(agentCli, concurrency.WithTTL(5))
	if err != nil {
		t.Fatalf("agent session: %v", err)
	}
	m := concurrency.NewMutex(s, ns+"locks/direct")
	if err := m.Lock(ctx); err != nil {
		t.Errorf("agent mutex: %v", err)
	}
	if err := s.Close(); err != nil { // revokes the lease, which holds a namespace key
		t.Errorf("agent lease revoke: %v", err)
	}

	// The agent's API on the agent user: ACLs, a session, a lock.
	a := startAgentIn(t, agentCli, true, ns)
	mgmt := a.bootstrap(t)
	secret, _ := a.token(t, mgmt, "lock:batch-*:write")
	conn := a.dialTCP(t, secret)
	sid, err := openSession(t, conn)
	if err != nil {
		t.Fatal(err)
	}
	got, err := beaconpb.NewLockClient(conn).TryAcquire(ctxT(t), &beaconpb.LockAcquireRequest{Name: "batch-1", SessionId: sid})
	if err != nil || !got.Acquired {
		t.Errorf("lock through the agent user: %v %v", got, err)
	}

	rootCli := authClient(t, url, creds.Root)
	if rootCli == nil {
		t.Fatal("root was refused")
	}
	if r, err := rootCli.Get(ctx, "/elsewhere/x"); err != nil || len(r.Kvs) != 1 {
		t.Errorf("root get: %v %v", r, err)
	}
	if _, err := rootCli.MemberList(ctx); err != nil {
		t.Errorf("root member list: %v", err)
	}
}

// authClient is a client with credentials, or nil when etcd refuses them.
func authClient(t *testing.T, url string, set func(*clientv3.Config)) *clientv3.Client {
	t.Helper()
	cfg := clientv3.Config{Endpoints: []string{url}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()}
	set(&cfg)
	c, err := clientv3.New(cfg)
	if err != nil {
		return nil
	}
	t.Cleanup(func() { c.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.Status(ctx, url); err != nil {
		return nil
	}
	return c
}

func TestEtcdAuthBadInput(t *testing.T) {
	cli := testEtcd(t) // never enabled: each call is refused before any step
	for _, tc := range []struct {
		ns    string
		creds EtcdCredentials
	}{
		{"/", NewEtcdCredentials()},
		{"", NewEtcdCredentials()},
		{"/beacon/", EtcdCredentials{AgentUser: "a", AgentPassword: "p"}},
		{"/beacon/", EtcdCredentials{RootPassword: "r", AgentUser: "root", AgentPassword: "p"}},
	} {
		err := EnableEtcdAuth(ctxT(t), cli, tc.ns, tc.creds)
		if !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("EnableEtcdAuth(%q, %+v): %v; want invalid argument", tc.ns, tc.creds, err)
		}
	}
}

func TestEtcdCredentialsFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "etcd-credentials.json")
	c := NewEtcdCredentials()
	if err := SaveEtcdCredentials(path, c); err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o600 {
		t.Errorf("mode %v; want 0600", st.Mode().Perm())
	}
	got, err := LoadEtcdCredentials(path)
	if err != nil || got != c {
		t.Errorf("load: %+v %v; want %+v", got, err, c)
	}
	if err := SaveEtcdCredentials(path, c); err == nil {
		t.Errorf("save over an existing file: no error")
	}
	_ = os.Chmod(path, 0o644)
	if _, err := LoadEtcdCredentials(path); err == nil {
		t.Errorf("load of a world-readable file: no error")
	}
}

// The first member writes the credentials and turns auth on; another
// agent with the copied file gets the same; one without it is told where
// to get it.
func TestEnsureEtcdAuth(t *testing.T) {
	e, url, err := etcdtest.Start(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	raw := etcdtest.Client(t, url)
	path := filepath.Join(t.TempDir(), "etcd-credentials.json")
	first, err := EnsureEtcdAuth(ctxT(t), raw, "/beacon/", path, true)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := raw.Get(ctxT(t), "/beacon/x"); err == nil {
		t.Error("a client without credentials still reads once auth is on")
	}
	again, err := EnsureEtcdAuth(ctxT(t), authClient(t, url, first.Root), "/beacon/", path, false)
	if err != nil || again != first {
		t.Errorf("with the file: %+v %v; want the first member's", again, err)
	}
	if authClient(t, url, again.Agent) == nil {
		t.Error("the agent user of the file is refused")
	}
	_, err = EnsureEtcdAuth(ctxT(t), raw, "/beacon/", filepath.Join(t.TempDir(), "none.json"), false)
	if err == nil || !strings.Contains(err.Error(), "copy it here") {
		t.Errorf("without the file: %v", err)
	}
}
