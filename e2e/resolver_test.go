package e2e

import (
	"context"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/beaconhq/beacon/api/beaconpb"
	"github.com/beaconhq/beacon/client"
	"github.com/beaconhq/beacon/internal/testcluster"
	"github.com/miekg/dns"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"
)

// TestResolver: a gRPC client dials beacon:///greeter through its local
// agent, reaches the instances registered on another agent, and follows
// them as they come and go (healthy instances only).
func TestResolver(t *testing.T) {
	c := testcluster.New(t)
	a, b := memberAndProxy(t, c, "b")

	// Two real gRPC servers, registered on agent A within a session.
	serve := func() (string, int) {
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		s := grpc.NewServer()
		healthpb.RegisterHealthServer(s, health.NewServer())
		go func() { _ = s.Serve(lis) }()
		t.Cleanup(s.Stop)
		return lis.Addr().String(), lis.Addr().(*net.TCPAddr).Port
	}
	addr1, port1 := serve()
	addr2, port2 := serve()
	cl, err := client.New(a.APIAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for i, p := range []int{port1, port2} {
		if _, err := cl.Register(ctx, &beaconpb.Instance{Service: "greeter", Id: []string{"g1", "g2"}[i], Address: "127.0.0.1", Port: uint32(p)}, nil); err != nil {
			t.Fatal(err)
		}
	}

	// The client's agent is B.
	conn, err := grpc.NewClient("beacon:///greeter",
		grpc.WithResolvers(client.NewResolverBuilder(b.APIAddr)),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultServiceConfig(`{"loadBalancingConfig":[{"round_robin":{}}]}`))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	hc := healthpb.NewHealthClient(conn)
	seen := map[string]bool{}
	err = testcluster.Eventually(30*time.Second, func() error {
		var p peer.Peer
		if _, err := hc.Check(ctx, &healthpb.HealthCheckRequest{}, grpc.Peer(&p), grpc.WaitForReady(true)); err != nil {
			return err
		}
		seen[p.Addr.String()] = true
		if !seen[addr1] || !seen[addr2] {
			return errNotYet
		}
		return nil
	})
	if err != nil {
		t.Fatalf("round robin over both instances: saw %v: %v", seen, err)
	}

	// g1 leaves: every call goes to g2 from then on.
	if err := cl.Deregister(ctx, "greeter", "g1"); err != nil {
		t.Fatal(err)
	}
	err = testcluster.Eventually(30*time.Second, func() error {
		for i := 0; i < 10; i++ {
			var p peer.Peer
			if _, err := hc.Check(ctx, &healthpb.HealthCheckRequest{}, grpc.Peer(&p)); err != nil {
				return err
			}
			if p.Addr.String() != addr2 {
				return errNotYet
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("after g1 left, calls still reach it: %v", err)
	}
}

var errNotYet = &notYet{}

type notYet struct{}

func (*notYet) Error() string { return "not yet" }

// TestConfigServices: services: blocks in the config file are registered
// at start and follow the file on SIGHUP; a bad block stops the agent with
// the block and field named.
func TestConfigServices(t *testing.T) {
	c := testcluster.New(t)
	a := c.Host("a")
	cfg, write := configFile(t)
	write("services:\n  - name: web\n    port: 8080\n    tags: [blue]\n  - name: cache\n    port: 6379\n")
	a.Start("--config", cfg)
	a.WaitReady(readyWithin)
	waitDNS(t, a, "blue.web.service.beacon", dns.TypeA, "web from the config", has("A "+a.IP))
	waitDNS(t, a, "cache.service.beacon", dns.TypeA, "cache from the config", has("A "+a.IP))

	write("services:\n  - name: web\n    port: 8080\n    tags: [green]\n  - name: queue\n    port: 5672\n")
	if err := syscall.Kill(a.Pid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitDNS(t, a, "green.web.service.beacon", dns.TypeA, "web's new tag", has("A "+a.IP))
	waitDNS(t, a, "queue.service.beacon", dns.TypeA, "the added queue", has("A "+a.IP))
	waitDNS(t, a, "cache.service.beacon", dns.TypeA, "cache dropped", empty)

	// A bad file on SIGHUP keeps what runs.
	write("services:\n  - name: web\n    port: none\n")
	if err := syscall.Kill(a.Pid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitLog(t, a, "config not reloaded")
	if rrs, _ := dnsAnswer(t, a, "queue.service.beacon", dns.TypeA); !has("A " + a.IP)(rrs) {
		t.Fatalf("a bad reload dropped the running services: %v", rrs)
	}
	if err := a.Stop(); err != nil {
		t.Fatal(err)
	}

	// The same bad file at start: one line naming services[0].port.
	bad := c.Host("bad")
	line := refused(t, bad, nil, append(append([]string{"agent"}, bad.Args()...), "--config", cfg)...)
	if !strings.Contains(line, "services[0].port") {
		t.Fatalf("bad services block: %q", line)
	}
}

func waitLog(t *testing.T, a *testcluster.Agent, want string) {
	t.Helper()
	err := testcluster.Eventually(30*time.Second, func() error {
		if strings.Contains(a.Log(), want) {
			return nil
		}
		return errNotYet
	})
	if err != nil {
		t.Fatalf("%s never logged %q", a.Name, want)
	}
}
