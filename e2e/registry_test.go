package e2e

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/beaconhq/beacon/api/beaconpb"
	"github.com/beaconhq/beacon/client"
	"github.com/beaconhq/beacon/internal/testcluster"
	"github.com/miekg/dns"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
)

// dnsAnswer asks an agent's DNS and returns the answer records as strings
// ("A 127.0.0.1", "SRV 0 1 8080 id.web.service.beacon.").
func dnsAnswer(t *testing.T, a *testcluster.Agent, name string, qtype uint16) ([]string, int) {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	c := &dns.Client{Timeout: 2 * time.Second}
	r, _, err := c.Exchange(m, a.DNSAddr)
	if err != nil {
		return []string{"error: " + err.Error()}, -1
	}
	var out []string
	for _, rr := range r.Answer {
		f := strings.Fields(rr.String())
		out = append(out, strings.Join(f[3:], " "))
	}
	sort.Strings(out)
	return out, r.Rcode
}

// waitDNS waits until the agent's answer for name satisfies ok.
func waitDNS(t *testing.T, a *testcluster.Agent, name string, qtype uint16, what string, ok func([]string) bool) time.Duration {
	t.Helper()
	start := time.Now()
	var last []string
	err := testcluster.Eventually(30*time.Second, func() error {
		last, _ = dnsAnswer(t, a, name, qtype)
		if ok(last) {
			return nil
		}
		return fmt.Errorf("not yet")
	})
	if err != nil {
		t.Fatalf("%s's DNS for %s: want %s, last answer %v", a.Name, name, what, last)
	}
	return time.Since(start)
}

func has(sub string) func([]string) bool {
	return func(rrs []string) bool { return strings.Contains(strings.Join(rrs, "\n"), sub) }
}

func empty(rrs []string) bool { return len(rrs) == 0 }

// buildExample builds one of the programs under examples/.
func buildExample(t *testing.T, name string) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), name)
	cmd := exec.Command("go", "build", "-o", out, "./examples/"+name)
	cmd.Dir = ".."
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build examples/%s: %v\n%s", name, err, b)
	}
	return out
}

// startApp runs examples/register against an agent and waits for its
// registration; it returns the process and the instance id.
func startApp(t *testing.T, bin string, a *testcluster.Agent, args ...string) (*exec.Cmd, string) {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"--agent", a.APIAddr}, args...)...)
	l := firstLine(t, cmd)
	f := strings.Fields(l)
	if len(f) < 2 || f[0] != "registered" {
		t.Fatalf("app printed %q", l)
	}
	return cmd, f[1]
}

// firstLine starts cmd (killed when the test ends) and returns the first
// line it prints, within 30 s.
func firstLine(t *testing.T, cmd *exec.Cmd) string {
	t.Helper()
	out, _ := cmd.StdoutPipe()
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	line := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		if sc.Scan() {
			line <- sc.Text()
		}
		close(line)
	}()
	select {
	case l, ok := <-line:
		if !ok {
			t.Fatalf("%v printed nothing; stderr: %s", cmd.Args, stderr.String())
		}
		return l
	case <-time.After(30 * time.Second):
		t.Fatalf("%v printed nothing in 30 s; stderr: %s", cmd.Args, stderr.String())
	}
	return ""
}

// TestRegisterAcrossAgents: an app registers over gRPC on agent A; agent
// B, a proxy, answers for it in DNS; kill -9 of the app removes it from
// every agent's answers at once (by the session's revoke, not its TTL).
func TestRegisterAcrossAgents(t *testing.T) {
	c := testcluster.New(t)
	// Anti-entropy once an hour: it would otherwise remove the killed
	// app's instance within its 5s pass as well, and hide a missing revoke.
	a := c.Host("a")
	a.Start("--anti-entropy-interval", "1h")
	a.WaitReady(readyWithin)
	b := c.Host("b")
	b.Start("--role", "proxy", "--join", a.ClientURL, "--anti-entropy-interval", "1h")
	b.WaitReady(readyWithin)

	app := buildExample(t, "register")
	proc, id := startApp(t, app, a, "--name", "payments", "--tag", "v2")

	for _, ag := range []*testcluster.Agent{a, b} {
		waitDNS(t, ag, "payments.service.beacon", dns.TypeSRV, "the app's SRV", has(id+".payments.service.beacon."))
		waitDNS(t, ag, "payments.service.beacon", dns.TypeA, "the app's A", has("A 127.0.0.1"))
		waitDNS(t, ag, "v2.payments.service.beacon", dns.TypeSRV, "the tag-filtered SRV", has(id))
		if rrs, rcode := dnsAnswer(t, ag, "v1.payments.service.beacon", dns.TypeSRV); len(rrs) != 0 || rcode != dns.RcodeNameError {
			t.Fatalf("%s: a tag nobody has names nothing (NXDOMAIN), got %v rcode %d", ag.Name, rrs, rcode)
		}
	}
	// Go's own resolver against B.
	r := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "udp", b.DNSAddr)
	}}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, srvs, err := r.LookupSRV(ctx, "payments", "tcp", "service.beacon")
	if err != nil || len(srvs) != 1 || !strings.HasPrefix(srvs[0].Target, id+".") {
		t.Fatalf("LookupSRV _payments._tcp.service.beacon: %v %v", srvs, err)
	}
	hosts, err := r.LookupHost(ctx, srvs[0].Target)
	if err != nil || len(hosts) != 1 || hosts[0] != "127.0.0.1" {
		t.Fatalf("LookupHost %s: %v %v", srvs[0].Target, hosts, err)
	}

	// kill -9: the session stream breaks, the agent revokes the lease.
	// Without the revoke the lease would last what it has left (the
	// session's 10s TTL, less since the last keepalive): the instance must
	// be gone everywhere before that could have run out, a bound the lease
	// itself gives rather than a figure of this test's.
	ctx2, cancel2 := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel2()
	kv, err := a.Client().Get(ctx2, "/beacon/services/payments/"+id)
	if err != nil || len(kv.Kvs) != 1 || kv.Kvs[0].Lease == 0 {
		t.Fatalf("the app's instance key: %v %v", kv, err)
	}
	left, err := a.Client().TimeToLive(ctx2, clientv3.LeaseID(kv.Kvs[0].Lease))
	if err != nil || left.TTL <= 0 {
		t.Fatalf("the app's lease: %v %v", left, err)
	}
	killed := time.Now()
	if err := proc.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	for _, ag := range []*testcluster.Agent{a, b} {
		waitDNS(t, ag, "payments.service.beacon", dns.TypeSRV, "no answer", empty)
	}
	if took, lease := time.Since(killed), time.Duration(left.TTL)*time.Second; took >= lease {
		t.Fatalf("the killed app was dropped %s after the kill, when its lease had %s left: an expiry, not the revoke", took, lease)
	}
}

// TestAgentKilledLosesInstances: kill -9 of an agent: its instances stay
// until their lease's TTL, then are gone from the other agents' answers.
func TestAgentKilledLosesInstances(t *testing.T) {
	c := testcluster.New(t)
	a, p := memberAndProxy(t, c, "p", "--node-ttl", "10s")
	if _, stderr, err := p.CLI("register", "--name", "cache", "--port", "6379"); err != nil {
		t.Fatalf("beacon register: %v %s", err, stderr)
	}
	waitDNS(t, a, "cache.service.beacon", dns.TypeA, "p's instance", has("A "+p.IP))
	p.Kill()
	// Still there right after the kill: nobody revoked anything, and the
	// lease has up to 10s to run (a TTL long enough that the one query
	// below comes well within it, however loaded the machine)...
	if rrs, _ := dnsAnswer(t, a, "cache.service.beacon", dns.TypeA); !has("A " + p.IP)(rrs) {
		t.Fatalf("instance gone right after kill -9, before its 10s TTL: %v", rrs)
	}
	// ...and gone after the TTL.
	waitDNS(t, a, "cache.service.beacon", dns.TypeA, "nothing once the TTL passed", empty)
	if _, rcode := dnsAnswer(t, a, "p.node.beacon", dns.TypeA); rcode != dns.RcodeNameError {
		t.Fatalf("the dead agent's node name should be NXDOMAIN, got rcode %d", rcode)
	}
}

// TestHealthChecks: a failing HTTP check takes the instance out of DNS, a
// recovered one puts it back; a TTL check follows `beacon check`.
func TestHealthChecks(t *testing.T) {
	var healthy atomic.Bool
	healthy.Store(true)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if !healthy.Load() {
			w.WriteHeader(http.StatusInternalServerError)
		}
	}))
	defer srv.Close()

	c := testcluster.New(t)
	a := c.Host("a")
	a.Start()
	a.WaitReady(readyWithin)
	if _, stderr, err := a.CLI("register", "--name", "web", "--port", "80", "--id", "web1",
		"--check-http", srv.URL, "--interval", "200ms"); err != nil {
		t.Fatalf("register: %v %s", err, stderr)
	}
	waitDNS(t, a, "web.service.beacon", dns.TypeA, "web1 passing", has("A "+a.IP))
	healthy.Store(false)
	waitDNS(t, a, "web.service.beacon", dns.TypeA, "web1 out", empty)
	out, _, _ := a.CLI("services", "web")
	if !strings.Contains(out, "critical") {
		t.Fatalf("beacon services web should show critical:\n%s", out)
	}
	healthy.Store(true)
	waitDNS(t, a, "web.service.beacon", dns.TypeA, "web1 back", has("A "+a.IP))

	// TTL check: critical until the first pass; fail takes it out.
	if _, stderr, err := a.CLI("register", "--name", "batch", "--port", "9000", "--id", "b1", "--ttl", "1h"); err != nil {
		t.Fatalf("register ttl: %v %s", err, stderr)
	}
	if rrs, rcode := dnsAnswer(t, a, "batch.service.beacon", dns.TypeA); len(rrs) != 0 || rcode != dns.RcodeSuccess {
		t.Fatalf("a TTL instance before its first pass should be NODATA: %v %d", rrs, rcode)
	}
	if _, stderr, err := a.CLI("check", "pass", "b1"); err != nil {
		t.Fatalf("check pass: %v %s", err, stderr)
	}
	waitDNS(t, a, "batch.service.beacon", dns.TypeA, "b1 passing", has("A "+a.IP))
	if _, stderr, err := a.CLI("check", "fail", "b1", "--note", "disk full"); err != nil {
		t.Fatalf("check fail: %v %s", err, stderr)
	}
	waitDNS(t, a, "batch.service.beacon", dns.TypeA, "b1 out", empty)
	if _, stderr, err := a.CLI("check", "pass", "web1"); err == nil || !strings.Contains(stderr, "no TTL check") {
		t.Fatalf("check on an HTTP-checked instance should fail: %v %s", err, stderr)
	}
}

// TestAgentRestartRestores: agent-owned registrations leave DNS when the
// agent stops and come back when it restarts on the same data dir.
func TestAgentRestartRestores(t *testing.T) {
	c := testcluster.New(t)
	a, b := memberAndProxy(t, c, "b")
	if _, stderr, err := b.CLI("register", "--name", "db", "--port", "5432", "--meta", "version=15"); err != nil {
		t.Fatalf("register: %v %s", err, stderr)
	}
	waitDNS(t, a, "db.service.beacon", dns.TypeTXT, "db's meta", has("version=15"))
	if err := b.Stop(); err != nil {
		t.Fatal(err)
	}
	waitDNS(t, a, "db.service.beacon", dns.TypeA, "db gone with its agent", empty)
	b.Start("--role", "proxy", "--join", a.ClientURL)
	b.WaitReady(readyWithin)
	waitDNS(t, a, "db.service.beacon", dns.TypeA, "db back", has("A "+b.IP))
	if _, stderr, err := b.CLI("deregister", "b-db-5432"); err != nil {
		t.Fatalf("deregister: %v %s", err, stderr)
	}
	waitDNS(t, a, "db.service.beacon", dns.TypeA, "db deregistered", empty)
	if err := b.Stop(); err != nil {
		t.Fatal(err)
	}
	b.Start("--role", "proxy", "--join", a.ClientURL)
	b.WaitReady(readyWithin)
	out, _, err := b.CLI("services", "-w", "json")
	if err != nil || strings.Contains(out, "db") {
		t.Fatalf("a deregistered instance came back after restart: %v\n%s", err, out)
	}
}

// TestProxyCutOff: a proxy cut off from the members keeps answering DNS
// from its last catalog; after the cut heals, what it lost (its lease
// ended meanwhile) is written back by anti-entropy.
func TestProxyCutOff(t *testing.T) {
	c := testcluster.New(t)
	a, p := memberAndProxy(t, c, "p", "--node-ttl", "3s")
	if _, stderr, err := p.CLI("register", "--name", "api", "--port", "443"); err != nil {
		t.Fatalf("register: %v %s", err, stderr)
	}
	waitDNS(t, p, "api.service.beacon", dns.TypeA, "api", has("A "+p.IP))

	// Cut: the only member stops answering anyone, for twice the proxy's
	// node TTL (3s): by then the proxy's keepalives have failed for longer
	// than its lease could last, and its DNS must still answer from the
	// catalog it holds, at every query of the cut.
	if err := syscall.Kill(a.Pid(), syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	cut := time.Now()
	queries := 0
	for time.Since(cut) < 6*time.Second && queries < 200 {
		rrs, rcode := dnsAnswer(t, p, "api.service.beacon", dns.TypeA)
		queries++
		if rcode != dns.RcodeSuccess || !has("A "+p.IP)(rrs) {
			_ = syscall.Kill(a.Pid(), syscall.SIGCONT)
			t.Fatalf("cut-off proxy's DNS answered %v rcode %d, %s into the cut", rrs, rcode, time.Since(cut))
		}
		time.Sleep(50 * time.Millisecond)
	}
	if time.Since(cut) < 6*time.Second {
		_ = syscall.Kill(a.Pid(), syscall.SIGCONT)
		t.Fatalf("only %d queries answered within %s of the cut", queries, time.Since(cut))
	}
	if err := syscall.Kill(a.Pid(), syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}

	// Whatever the cut did to the lease (a member resuming may renew it
	// before its lessor expires it: racy either way), end it now from
	// outside, as an expiry would: the registration must come back under a
	// new lease.
	cli := a.Client()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	key := "/beacon/services/api/p-api-443"
	var got *clientv3.GetResponse
	err := testcluster.Eventually(20*time.Second, func() error {
		var err error
		got, err = cli.Get(ctx, key)
		if err == nil && len(got.Kvs) != 1 {
			return fmt.Errorf("no %s yet", key)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	old := got.Kvs[0].Lease
	// The lease may have ended between the Get and the Revoke (the resumed
	// member's lessor expiring it): that is the end this step wants.
	if _, err := cli.Revoke(ctx, clientv3.LeaseID(old)); err != nil && !errors.Is(err, rpctypes.ErrLeaseNotFound) {
		t.Fatal(err)
	}
	err = testcluster.Eventually(30*time.Second, func() error {
		r, err := cli.Get(ctx, key)
		if err != nil {
			return err
		}
		if len(r.Kvs) != 1 || r.Kvs[0].Lease == old || r.Kvs[0].Lease == 0 {
			return fmt.Errorf("not written back under a new lease yet")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	waitDNS(t, a, "api.service.beacon", dns.TypeA, "api back everywhere", has("A "+p.IP))
}

// TestRegisterBadInput: bad registrations are refused with the field named
// and leave nothing behind.
func TestRegisterBadInput(t *testing.T) {
	c := testcluster.New(t)
	a := c.Host("a")
	a.Start()
	a.WaitReady(readyWithin)
	cl, err := client.New(a.APIAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	reg := func(in *beaconpb.Instance, chk *beaconpb.Check) error {
		_, err := cl.Registry.Register(ctx, &beaconpb.RegisterRequest{Instance: in, Check: chk})
		return err
	}
	big := strings.Repeat("x", 65<<10)
	cases := []struct {
		name  string
		in    *beaconpb.Instance
		chk   *beaconpb.Check
		code  codes.Code
		field string
	}{
		{"not a label", &beaconpb.Instance{Service: "my_service", Port: 80}, nil, codes.InvalidArgument, "service"},
		{"dot in name", &beaconpb.Instance{Service: "a.b", Port: 80}, nil, codes.InvalidArgument, "service"},
		{"port 0", &beaconpb.Instance{Service: "web", Port: 0}, nil, codes.InvalidArgument, "port"},
		{"port 65536", &beaconpb.Instance{Service: "web", Port: 65536}, nil, codes.InvalidArgument, "port"},
		{"meta too big", &beaconpb.Instance{Service: "web", Port: 80, Meta: map[string]string{"k": big}}, nil, codes.InvalidArgument, "meta"},
		{"bad address", &beaconpb.Instance{Service: "web", Port: 80, Address: "example.com"}, nil, codes.InvalidArgument, "address"},
		{"bad tag", &beaconpb.Instance{Service: "web", Port: 80, Tags: []string{"a b"}}, nil, codes.InvalidArgument, "tags"},
		{"two checks", &beaconpb.Instance{Service: "web", Port: 80}, &beaconpb.Check{Http: "http://127.0.0.1:1/", Tcp: "127.0.0.1:1"}, codes.InvalidArgument, "check"},
		{"bad interval", &beaconpb.Instance{Service: "web", Port: 80}, &beaconpb.Check{Tcp: "127.0.0.1:1", Interval: durationpb.New(-time.Second)}, codes.InvalidArgument, "check.interval"},
		{"no instance", nil, nil, codes.InvalidArgument, "instance"},
	}
	for _, tc := range cases {
		err := reg(tc.in, tc.chk)
		if s := status.Convert(err); s.Code() != tc.code || !strings.Contains(s.Message(), tc.field) {
			t.Errorf("%s: got %v, want %s naming %s", tc.name, err, tc.code, tc.field)
		}
	}
	// Duplicate id: the first wins, the second is AlreadyExists.
	if err := reg(&beaconpb.Instance{Service: "web", Id: "w1", Port: 80}, nil); err != nil {
		t.Fatal(err)
	}
	sess, err := cl.NewSession(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	_, err = cl.Registry.Register(ctx, &beaconpb.RegisterRequest{SessionId: sess.ID, Instance: &beaconpb.Instance{Service: "web", Id: "w1", Port: 81}})
	if s := status.Convert(err); s.Code() != codes.AlreadyExists || !strings.Contains(s.Message(), "w1") {
		t.Fatalf("duplicate id: %v", err)
	}
	_, err = cl.Registry.Register(ctx, &beaconpb.RegisterRequest{SessionId: "nope", Instance: &beaconpb.Instance{Service: "web", Port: 82}})
	if s := status.Convert(err); s.Code() != codes.NotFound || !strings.Contains(s.Message(), "session") {
		t.Fatalf("unknown session: %v", err)
	}
	// Nothing half-written: only w1 exists.
	list, err := cl.Registry.List(ctx, &beaconpb.ListRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Instances) != 1 || list.Instances[0].Id != "w1" || list.Instances[0].Port != 80 {
		t.Fatalf("catalog after bad input: %v", list.Instances)
	}
	// Session open with a bad TTL.
	stream, err := cl.Sessions.Open(ctx)
	if err != nil {
		t.Fatal(err)
	}
	_ = stream.Send(&beaconpb.SessionRequest{Kind: &beaconpb.SessionRequest_Open{Open: &beaconpb.OpenSession{Ttl: durationpb.New(100000 * time.Second)}}})
	if _, err := stream.Recv(); status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "ttl") {
		t.Fatalf("session with ttl 100000s: %v", err)
	}
}

// TestAppSurvivesAgentRestart: an app registered through the Go SDK stays
// registered across a restart of its agent: the SDK opens a new session
// and registers again.
func TestAppSurvivesAgentRestart(t *testing.T) {
	c := testcluster.New(t)
	a, b := memberAndProxy(t, c, "b")
	app := buildExample(t, "register")
	_, id := startApp(t, app, b, "--name", "orders")
	waitDNS(t, a, "orders.service.beacon", dns.TypeSRV, "the app", has(id))
	if err := b.Stop(); err != nil {
		t.Fatal(err)
	}
	waitDNS(t, a, "orders.service.beacon", dns.TypeSRV, "gone with its agent", empty)
	b.Start("--role", "proxy", "--join", a.ClientURL)
	b.WaitReady(readyWithin)
	waitDNS(t, a, "orders.service.beacon", dns.TypeSRV, "the app registered again", has(id))
}

// TestDefaultIDFromHostName: a node name that is not a DNS label (dots,
// underscores) still gives a valid default instance id.
func TestDefaultIDFromHostName(t *testing.T) {
	c := testcluster.New(t)
	a := c.Host("ip-10-0-0-1.ec2_internal")
	a.Start()
	a.WaitReady(readyWithin)
	out, stderr, err := a.CLI("register", "--name", "web", "--port", "8080")
	if err != nil || !strings.Contains(out, "registered ip-10-0-0-1-ec2-internal-web-8080") {
		t.Fatalf("register on a dotted node name: %v %s %s", err, out, stderr)
	}
}

// TestConcurrentRegistrations: two sessions race to register the same 100
// ids, 16 at a time each (new registrations are group-committed): every id
// ends with exactly one owner, the loser is told AlreadyExists, and the
// catalog holds exactly the winners.
func TestConcurrentRegistrations(t *testing.T) {
	c := testcluster.New(t)
	a := c.Host("a")
	a.Start()
	a.WaitReady(readyWithin)
	cl, err := client.New(a.APIAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var sessions [2]*client.Session
	for i := range sessions {
		if sessions[i], err = cl.NewSession(ctx); err != nil {
			t.Fatal(err)
		}
		defer sessions[i].Close()
	}
	const n = 100
	var won [2][n]atomic.Bool
	errs := make(chan error, 2*n)
	done := make(chan struct{})
	for s := 0; s < 2; s++ {
		for w := 0; w < 16; w++ {
			go func(s, w int) {
				for i := w; i < n; i += 16 {
					_, err := cl.Registry.Register(ctx, &beaconpb.RegisterRequest{SessionId: sessions[s].ID,
						Instance: &beaconpb.Instance{Service: "race", Id: fmt.Sprintf("i%d", i), Port: uint32(1000 + s)}})
					switch status.Code(err) {
					case codes.OK:
						won[s][i].Store(true)
					case codes.AlreadyExists:
					default:
						errs <- err
					}
					done <- struct{}{}
				}
			}(s, w)
		}
	}
	for i := 0; i < 2*n; i++ {
		select {
		case <-done:
		case err := <-errs:
			t.Fatalf("registration failed: %v", err)
		}
	}
	// The catalog is fed by a watch: wait until it holds all n.
	got := map[string]uint32{}
	err = testcluster.Eventually(30*time.Second, func() error {
		list, err := cl.Registry.List(ctx, &beaconpb.ListRequest{Service: "race"})
		if err != nil {
			return err
		}
		got = map[string]uint32{}
		for _, in := range list.Instances {
			got[in.Id] = in.Port
		}
		if len(got) < n {
			return errNotYet
		}
		return nil
	})
	if err != nil {
		t.Fatalf("catalog holds %d of %d instances: %v", len(got), n, err)
	}
	for i := 0; i < n; i++ {
		a, b := won[0][i].Load(), won[1][i].Load()
		if a == b {
			t.Fatalf("i%d: session 0 won %v, session 1 won %v; want exactly one", i, a, b)
		}
		want := uint32(1000)
		if b {
			want = 1001
		}
		if got[fmt.Sprintf("i%d", i)] != want {
			t.Fatalf("i%d: catalog has port %d, the winner registered %d", i, got[fmt.Sprintf("i%d", i)], want)
		}
	}
	if len(got) != n {
		t.Fatalf("catalog holds %d instances, want %d", len(got), n)
	}
}

// TestKilledAgentRestartKeepsInstances: an agent killed with kill -9 and
// started again takes its registrations back at once, under its new
// lease. They must not stay under the dead run's lease and drop out of
// etcd (and DNS) when it expires.
func TestKilledAgentRestartKeepsInstances(t *testing.T) {
	c := testcluster.New(t)
	a, b := memberAndProxy(t, c, "b", "--node-ttl", "3s")
	if _, stderr, err := b.CLI("register", "--name", "db", "--port", "5432"); err != nil {
		t.Fatalf("register: %v %s", err, stderr)
	}
	cli := a.Client()
	key := "/beacon/services/db/b-db-5432"
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var oldLease int64
	if err := testcluster.Eventually(10*time.Second, func() error {
		resp, err := cli.Get(ctx, key)
		if err != nil || len(resp.Kvs) == 0 {
			return fmt.Errorf("not yet: %v", err)
		}
		oldLease = resp.Kvs[0].Lease
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	b.Kill()
	b.Start("--role", "proxy", "--join", a.ClientURL, "--node-ttl", "3s")
	b.WaitReady(readyWithin)
	// Past the old lease's end (3 s after the kill) and then some, the key
	// is there at every look.
	for time.Since(killed) < 6*time.Second {
		resp, err := cli.Get(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.Kvs) == 0 {
			t.Fatalf("%s gone %s after the kill", key, time.Since(killed).Round(time.Millisecond))
		}
		time.Sleep(20 * time.Millisecond)
	}
	resp, err := cli.Get(ctx, key)
	if err != nil || len(resp.Kvs) == 0 || resp.Kvs[0].Lease == oldLease {
		t.Fatalf("after the old lease ended: %v, lease %x (old %x)", err, resp.Kvs[0].Lease, oldLease)
	}
}
