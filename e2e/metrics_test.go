package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/beaconhq/beacon/api/beaconpb"
	"github.com/beaconhq/beacon/client"
	"github.com/beaconhq/beacon/internal/testcluster"
	"github.com/miekg/dns"
	dto "github.com/prometheus/client_model/go"
)

// designMetrics are the metrics DESIGN.md names, and the one added
// (elections led).
var designMetrics = []string{
	"beacon_dns_queries_total", "beacon_dns_query_duration_seconds",
	"beacon_catalog_instances", "beacon_catalog_services", "beacon_catalog_lag_seconds",
	"beacon_health_checks", "beacon_sessions_open", "beacon_lock_waiters", "beacon_lock_grants_total",
	"beacon_queue_messages", "beacon_antientropy_repairs_total", "beacon_elections_led",
}

// A member and a proxy, each doing the work behind every metric through
// the CLI, gRPC and a DNS client: each metric moves with its work, the
// proxy serves no etcd server metrics, and the dashboard asks only for
// what the agents serve.
func TestMetricsOfItsOwn(t *testing.T) {
	c := testcluster.New(t)
	a, p := memberAndProxy(t, c, "p")
	cli := func(args ...string) string {
		t.Helper()
		out, errOut, err := p.CLI(args...)
		if err != nil {
			t.Fatalf("beacon %s: %v: %s", strings.Join(args, " "), err, errOut)
		}
		return out
	}

	// What each role serves of etcd's.
	for _, ag := range []*testcluster.Agent{a, p} {
		mfs, err := scrape(ag)
		if err != nil {
			t.Fatal(err)
		}
		for name := range mfs {
			proxyOwn := strings.HasPrefix(name, "etcd_grpc_proxy_")
			if ag == p && strings.HasPrefix(name, "etcd_") && !proxyOwn || ag == a && proxyOwn {
				t.Errorf("%s serves %s", ag.Name, name)
			}
		}
	}
	if v := value(t, a, "etcd_server_has_leader"); v != 1 {
		t.Errorf("the member's etcd_server_has_leader = %v", v)
	}
	baseInstances, baseServices := value(t, p, "beacon_catalog_instances"), value(t, p, "beacon_catalog_services")

	// A registration with a TTL check: in both catalogs, and a check of
	// the proxy's, critical until its first heartbeat.
	cli("register", "--name", "web", "--port", "8080", "--ttl", "1m")
	for _, ag := range []*testcluster.Agent{a, p} {
		expect(t, ag, baseInstances+1, "beacon_catalog_instances")
		expect(t, ag, baseServices+1, "beacon_catalog_services")
	}
	expect(t, p, 1, "beacon_health_checks", "status", "critical")
	cli("check", "pass", "p-web-8080")
	expect(t, p, 1, "beacon_health_checks", "status", "passing")
	expect(t, p, 0, "beacon_health_checks", "status", "critical")

	// DNS: counted by type and rcode, timed by transport.
	ask := func(name string, qtype uint16, net string) {
		t.Helper()
		m := new(dns.Msg)
		m.SetQuestion(name, qtype)
		if _, _, err := (&dns.Client{Net: net, Timeout: 5 * time.Second}).Exchange(m, p.DNSAddr); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	for range 5 {
		ask("web.service.beacon.", dns.TypeSRV, "udp")
	}
	ask("nothing.service.beacon.", dns.TypeA, "udp")
	ask("nothing.service.beacon.", dns.TypeA, "udp")
	ask("example.com.", dns.TypeA, "udp")
	ask("web.service.beacon.", dns.TypeSRV, "tcp")
	expect(t, p, 6, "beacon_dns_queries_total", "qtype", "SRV", "rcode", "NOERROR")
	expect(t, p, 2, "beacon_dns_queries_total", "qtype", "A", "rcode", "NXDOMAIN")
	expect(t, p, 1, "beacon_dns_queries_total", "qtype", "A", "rcode", "REFUSED")
	expect(t, p, 8, "beacon_dns_query_duration_seconds", "transport", "udp")
	expect(t, p, 1, "beacon_dns_query_duration_seconds", "transport", "tcp")

	// Sessions, a lock with a waiter, an election.
	cl, err := client.New(p.APIAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	baseSessions := value(t, p, "beacon_sessions_open")
	s1, err := cl.NewSession(ctx)
	if err != nil {
		t.Fatal(err)
	}
	s2, err := cl.NewSession(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	expect(t, p, baseSessions+2, "beacon_sessions_open")
	lc := beaconpb.NewLockClient(cl.Conn())
	held, err := lc.Acquire(ctx, &beaconpb.LockAcquireRequest{Name: "metrics", SessionId: s1.ID})
	if err != nil || !held.Acquired {
		t.Fatalf("acquire: %v %v", held, err)
	}
	expect(t, p, 1, "beacon_lock_grants_total")
	waited := make(chan error, 1)
	go func() {
		r, err := lc.Acquire(ctx, &beaconpb.LockAcquireRequest{Name: "metrics", SessionId: s2.ID})
		if err == nil && !r.Acquired {
			err = fmt.Errorf("not acquired: %v", r)
		}
		waited <- err
	}()
	expect(t, p, 1, "beacon_lock_waiters")
	if _, err := lc.Release(ctx, &beaconpb.LockReleaseRequest{Key: held.Key, Token: held.Token, SessionId: s1.ID}); err != nil {
		t.Fatal(err)
	}
	if err := <-waited; err != nil {
		t.Fatal(err)
	}
	expect(t, p, 0, "beacon_lock_waiters")
	expect(t, p, 2, "beacon_lock_grants_total")
	if _, err := beaconpb.NewElectionClient(cl.Conn()).Campaign(ctx, &beaconpb.ElectionCampaignRequest{Name: "metrics", SessionId: s1.ID, Proposal: "p"}); err != nil {
		t.Fatal(err)
	}
	expect(t, p, 1, "beacon_elections_led")
	expect(t, a, 0, "beacon_elections_led")
	s1.Close() // its leadership ends with it
	expect(t, p, 0, "beacon_elections_led")
	expect(t, p, baseSessions+1, "beacon_sessions_open")

	// A queue the proxy's consumers use.
	for i := range 3 {
		cli("queue", "push", "jobs", fmt.Sprintf("job %d", i))
	}
	cli("queue", "reserve", "jobs")
	expect(t, p, 1, "beacon_queue_messages", "queue", "jobs", "state", "inflight")
	expect(t, p, 2, "beacon_queue_messages", "queue", "jobs", "state", "ready")
	expect(t, p, 0, "beacon_queue_messages", "queue", "jobs", "state", "dead")
	// The member sees the same queue once a consumer of its own uses it.
	if _, errOut, err := a.CLI("queue", "reserve", "jobs"); err != nil {
		t.Fatalf("reserve through the member: %v: %s", err, errOut)
	}
	expect(t, a, 2, "beacon_queue_messages", "queue", "jobs", "state", "inflight")
	expect(t, a, 1, "beacon_queue_messages", "queue", "jobs", "state", "ready")
	expect(t, p, 2, "beacon_queue_messages", "queue", "jobs", "state", "inflight")

	// etcd loses the proxy's instance: its anti-entropy writes it back.
	if _, err := a.Client().Delete(ctx, "/beacon/services/web/p-web-8080"); err != nil {
		t.Fatal(err)
	}
	waitValue(t, p, 60*time.Second, func(v float64) bool { return v >= 1 }, "at least 1", "beacon_antientropy_repairs_total")
	expect(t, a, baseInstances+1, "beacon_catalog_instances")

	// Both catalogs are current; the member answers DNS too.
	for _, ag := range []*testcluster.Agent{a, p} {
		expect(t, ag, 0, "beacon_catalog_lag_seconds")
	}
	m := new(dns.Msg)
	m.SetQuestion("web.service.beacon.", dns.TypeA)
	if _, err := dns.Exchange(m, a.DNSAddr); err != nil {
		t.Fatal(err)
	}

	// Every metric DESIGN.md names is served by both, and the dashboard
	// asks for nothing else than what the agents serve.
	served := map[string]bool{}
	for _, ag := range []*testcluster.Agent{a, p} {
		mfs, err := scrape(ag)
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range designMetrics {
			if mfs[name] == nil {
				t.Errorf("%s does not serve %s", ag.Name, name)
			}
		}
		for name, mf := range mfs {
			served[name] = true
			if mf.GetType() == dto.MetricType_HISTOGRAM {
				served[name+"_bucket"], served[name+"_sum"], served[name+"_count"] = true, true, true
			}
		}
	}
	checkDashboard(t, "../docs/grafana/beacon.json", served)

	// Cut off from etcd, the proxy's catalog says how stale it is.
	a.Kill()
	waitValue(t, p, 60*time.Second, func(v float64) bool { return v >= 3 }, "at least 3 s", "beacon_catalog_lag_seconds")
}
