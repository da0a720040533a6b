package registry

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/beaconhq/beacon/healthcheck"
	"github.com/beaconhq/beacon/internal/etcdtest"
	mt "github.com/beaconhq/beacon/internal/metricstest"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// followingCatalog is a catalog of cli's, loaded and following until the
// test ends.
func followingCatalog(t *testing.T, cli *clientv3.Client) *Catalog {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	cat := NewCatalog(cli, "/beacon/")
	go cat.Run(ctx)
	<-cat.Ready()
	return cat
}

// The catalog's gauges follow what etcd holds: instances and services
// come and go with their keys.
func TestCatalogMetrics(t *testing.T) {
	cli, _ := etcdtest.New(t)
	ctx := context.Background()
	m := followingCatalog(t, cli).Metrics()
	for i := range 3 {
		putInstance(t, cli, Instance{ID: fmt.Sprintf("web-%d", i), Service: "web", Node: "n1", Address: "10.0.0.1", Port: 80 + i})
	}
	putInstance(t, cli, Instance{ID: "db-1", Service: "db", Node: "n1", Address: "10.0.0.2", Port: 5432})
	mt.Wait(t, m, 10*time.Second, "beacon_catalog_instances", mt.Is(4))
	mt.Wait(t, m, 10*time.Second, "beacon_catalog_services", mt.Is(2))
	if _, err := cli.Delete(ctx, Key("/beacon/", "db", "db-1")); err != nil {
		t.Fatal(err)
	}
	mt.Wait(t, m, 10*time.Second, "beacon_catalog_instances", mt.Is(3))
	mt.Wait(t, m, 10*time.Second, "beacon_catalog_services", mt.Is(1))
}

// The lag is 0 while the watch answers its checks, and grows once etcd
// is gone: the catalog serves what it last knew, and says how old it is.
func TestCatalogLag(t *testing.T) {
	e, endpoint, err := etcdtest.Start(t.TempDir()) // closed by the test itself
	if err != nil {
		t.Fatal(err)
	}
	cli := etcdtest.Client(t, endpoint)
	cat := followingCatalog(t, cli)
	m := cat.Metrics()
	mt.Wait(t, m, 10*time.Second, "beacon_catalog_lag_seconds", mt.Is(0))
	// Probes keep being answered, the cluster quiet or not (a write past
	// the watches' start lets etcd answer them): the catalog is confirmed
	// current again two probes later, and reads 0 once that one is
	// answered.
	if _, err := cli.Put(context.Background(), "/elsewhere", "x"); err != nil {
		t.Fatal(err)
	}
	later := time.Now().Add(2 * lagProbeEvery)
	deadline := time.Now().Add(20 * time.Second)
	for {
		cat.lag.mu.Lock()
		confirmed := cat.lag.confirmed
		cat.lag.mu.Unlock()
		if confirmed.After(later) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no probe answered after %s (last confirmed %s)", later.Format(time.StampMilli), confirmed.Format(time.StampMilli))
		}
		time.Sleep(50 * time.Millisecond)
	}
	mt.Wait(t, m, 10*time.Second, "beacon_catalog_lag_seconds", mt.Is(0))
	e.Close()
	mt.Wait(t, m, 30*time.Second, "beacon_catalog_lag_seconds", mt.AtLeast(3))
}

// beacon_health_checks counts the checks this agent runs by status, and
// moves with them; an instance without a check is not one.
func TestHealthChecksByStatus(t *testing.T) {
	l, _ := testLocal(t, t.TempDir())
	ctx := context.Background()
	m := l.Metrics()
	ttl := healthcheck.Definition{TTL: time.Minute}
	if _, _, err := l.Register(ctx, Instance{Service: "a", ID: "a1", Port: 80}, ttl, OwnerAgent); err != nil {
		t.Fatal(err)
	}
	if _, _, err := l.Register(ctx, Instance{Service: "b", ID: "b1", Port: 80}, healthcheck.Definition{}, OwnerAgent); err != nil {
		t.Fatal(err)
	}
	mt.Wait(t, m, 10*time.Second, "beacon_health_checks", mt.Is(1), "status", "critical")
	for _, status := range []string{"passing", "warning"} {
		if v := mt.Value(t, m, "beacon_health_checks", "status", status); v != 0 {
			t.Fatalf("%s: %v before any heartbeat", status, v)
		}
	}
	if err := l.Heartbeat(OwnerAgent, "a", "a1", "pass", ""); err != nil {
		t.Fatal(err)
	}
	mt.Wait(t, m, 10*time.Second, "beacon_health_checks", mt.Is(1), "status", "passing")
	mt.Wait(t, m, 10*time.Second, "beacon_health_checks", mt.Is(0), "status", "critical")
	if err := l.Heartbeat(OwnerAgent, "a", "a1", "warn", ""); err != nil {
		t.Fatal(err)
	}
	mt.Wait(t, m, 10*time.Second, "beacon_health_checks", mt.Is(1), "status", "warning")
	if err := l.Deregister(ctx, "a", "a1"); err != nil {
		t.Fatal(err)
	}
	mt.Wait(t, m, 10*time.Second, "beacon_health_checks", mt.Is(0), "status", "warning")
}

// Anti-entropy counts what it repairs: an instance of this node etcd lost
// is written back, one etcd lists for this node that the node does not
// have is removed; a pass with nothing to repair counts nothing.
func TestAntiEntropyRepairsCounted(t *testing.T) {
	l, cli := testLocal(t, t.TempDir())
	ctx := context.Background()
	<-l.catalog.Ready()
	m := l.Metrics()
	in, _, err := l.Register(ctx, Instance{Service: "web", ID: "w1", Port: 80}, healthcheck.Definition{}, OwnerAgent)
	if err != nil {
		t.Fatal(err)
	}
	waitCatalog := func(what string, ok func() bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !ok() {
			if time.Now().After(deadline) {
				t.Fatalf("the catalog never showed %s", what)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitCatalog("w1", func() bool { _, ok := l.catalog.Instance("web", "w1"); return ok })
	l.sync(ctx)
	if v := mt.Value(t, m, "beacon_antientropy_repairs_total"); v != 0 {
		t.Fatalf("%v repairs with nothing to repair", v)
	}

	// etcd loses w1; a stale instance of this node appears.
	if _, err := cli.Delete(ctx, Key("/beacon/", "web", "w1")); err != nil {
		t.Fatal(err)
	}
	putInstance(t, cli, Instance{ID: "stale", Service: "web", Node: "n1", Address: "127.0.0.1", Port: 81})
	waitCatalog("the loss and the stale instance", func() bool {
		_, has := l.catalog.Instance("web", "w1")
		_, stale := l.catalog.Instance("web", "stale")
		return !has && stale
	})
	l.sync(ctx)
	if v := mt.Value(t, m, "beacon_antientropy_repairs_total"); v != 2 {
		t.Fatalf("beacon_antientropy_repairs_total = %v after one write-back and one removal, want 2", v)
	}
	resp, err := cli.Get(ctx, "/beacon/services/web/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) != 1 || string(resp.Kvs[0].Key) != Key("/beacon/", "web", in.ID) {
		t.Fatalf("etcd holds %d instances after the repair, want w1 alone", len(resp.Kvs))
	}
}
