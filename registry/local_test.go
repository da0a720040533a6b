package registry

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/beaconhq/beacon/healthcheck"
	"github.com/beaconhq/beacon/internal/rpcerr"
	"github.com/beaconhq/beacon/session"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// testLocal runs a real etcd in the test's process and an agent's
// registrations on it: the catalog, the agent
// session, and Local on dataDir.
func testLocal(t *testing.T, dataDir string) (*Local, *clientv3.Client) {
	t.Helper()
	cat, cli := runningCatalog(t)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	sessions := session.NewManager(cli)
	agentSess, err := sessions.Open(ctx, "agent", 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	l, err := NewLocal(ctx, LocalConfig{Client: cli, Namespace: "/beacon/", Node: "n1", NodeAddr: "127.0.0.1",
		DataDir: dataDir, Sessions: sessions, AgentSession: agentSess, Catalog: cat})
	if err != nil {
		t.Fatal(err)
	}
	return l, cli
}

// TestCloseKeepsTheDataDir: once the agent is stopping, a Register is
// refused (Unavailable) and what the data dir keeps stays whole.
func TestCloseKeepsTheDataDir(t *testing.T) {
	dir := t.TempDir()
	l, _ := testLocal(t, dir)
	ctx := context.Background()
	for _, name := range []string{"a", "b"} {
		if _, _, err := l.Register(ctx, Instance{Service: name, Port: 80}, healthcheck.Definition{}, OwnerAgent); err != nil {
			t.Fatal(err)
		}
	}
	l.Close()
	if _, _, err := l.Register(ctx, Instance{Service: "c", Port: 80}, healthcheck.Definition{}, OwnerAgent); err == nil || !isNamed(err, ErrStopping) {
		t.Fatalf("register after Close: %v", err)
	}
	if err := l.Deregister(ctx, "a", ""); !isNamed(err, ErrStopping) {
		t.Fatalf("deregister after Close: %v", err)
	}
	kept, err := keptIn(dir)
	if err != nil || len(kept) != 2 {
		t.Fatalf("kept after Close: %d registrations, %v", len(kept), err)
	}
}

// TestMonitorStopsWithItsSession: a session that ends after its instance
// was published and before its check started leaves no check running.
func TestMonitorStopsWithItsSession(t *testing.T) {
	l, _ := testLocal(t, t.TempDir())
	ctx := context.Background()
	s, err := l.sessions.Open(ctx, "app", 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	l.afterPublish = func(r *registration) { l.dropSession(s.ID) } // the session ends right there
	before := healthcheck.Running()
	check := healthcheck.Definition{TCP: "127.0.0.1:1", Interval: 100 * time.Millisecond}
	if _, _, err := l.Register(ctx, Instance{Service: "s", Port: 80}, check, SessionOwner(s.ID)); err != nil {
		t.Fatal(err)
	}
	if n := len(l.Registrations()); n != 0 {
		t.Fatalf("%d registrations outlived their session", n)
	}
	if running := healthcheck.Running(); running != before {
		t.Fatalf("%d checks running, %d before", running, before)
	}
}

// TestReloadKeepsUnchangedChecks: reloading the config with a block
// unchanged leaves its check running as it was, so that
// deregister-critical-after still fires however often the agent reloads;
// a changed block is registered anew.
func TestReloadKeepsUnchangedChecks(t *testing.T) {
	l, _ := testLocal(t, t.TempDir())
	ctx := context.Background()
	block := Registration{Instance: Instance{Service: "dead", Port: 80},
		Check: healthcheck.Definition{TCP: "127.0.0.1:1", Interval: 100 * time.Millisecond, DeregisterCriticalAfter: time.Second}}
	if err := l.SyncConfig(ctx, []Registration{block}); err != nil {
		t.Fatal(err)
	}
	// Reloads every 300 ms, for longer than deregister-critical-after.
	gone := false
	for range 20 {
		time.Sleep(300 * time.Millisecond)
		if len(l.Registrations()) == 0 {
			gone = true
			break
		}
		_ = l.SyncConfig(ctx, []Registration{block}) // it may answer that it re-registered the dead one: fine
	}
	if !gone {
		t.Fatal("an instance critical for 6s under reloads every 300ms was never deregistered")
	}

	// A changed block is taken at once.
	live := Registration{Instance: Instance{Service: "live", Port: 80}}
	if err := l.SyncConfig(ctx, []Registration{live}); err != nil {
		t.Fatal(err)
	}
	live.Instance.Port = 81
	if err := l.SyncConfig(ctx, []Registration{live}); err != nil {
		t.Fatal(err)
	}
	if regs := l.Registrations(); len(regs) != 1 || regs[0].Instance.Port != 81 {
		t.Fatalf("after a changed block: %+v", regs)
	}
}

// TestBatchWithARevokedLease: a create under a lease revoked meanwhile
// fails alone; the creates it shared a transaction with are not failed
// with it.
func TestBatchWithARevokedLease(t *testing.T) {
	l, cli := testLocal(t, t.TempDir())
	ctx := context.Background()
	good, err := cli.Grant(ctx, 60)
	if err != nil {
		t.Fatal(err)
	}
	bad, err := cli.Grant(ctx, 60)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Revoke(ctx, bad.ID); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make([]error, 50)
	created := make([]bool, 50)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			lease := good.ID
			if i == 25 {
				lease = bad.ID
			}
			_, created[i], errs[i] = l.batch.create(ctx, fmt.Sprintf("/beacon/services/batch/i%d", i), "{}", lease)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if i != 25 && err != nil {
			t.Fatalf("create %d under a live lease: %v", i, err)
		}
	}
	// A batch that failed answers not-created (each caller then goes its
	// own way); the create under the revoked lease must never be created.
	if created[25] {
		t.Fatal("the create under a revoked lease was answered created")
	}
	if r, err := cli.Get(ctx, "/beacon/services/batch/i25"); err != nil || len(r.Kvs) != 0 {
		t.Fatalf("the key under the revoked lease: %v %v", r.Kvs, err)
	}
}

func isNamed(err error, named *rpcerr.Named) bool { return errors.Is(err, named) }
