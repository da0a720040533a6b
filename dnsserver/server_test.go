package dnsserver

import (
	"context"
	"encoding/binary"
	"errors"
	"net"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/beaconhq/beacon/cluster"
	"github.com/beaconhq/beacon/registry"
	"github.com/miekg/dns"
)

// fixture is the catalog most tests answer from:
//
//	web:  web-1 10.0.0.1 passing [primary v1] meta version=1.0 zone=a
//	      web-2 10.0.0.2 passing [v1]
//	      web-3 fd00::3  passing [canary]
//	      web-4 10.0.0.4 warning [v1]
//	      web-5 10.0.0.5 critical [old primary]
//	db:   db-1 10.0.1.1 critical (known, nothing healthy)
//	nodes n1 192.168.1.10, n6 fd00::10
func fixture() *memCatalog {
	c := newMemCatalog()
	c.put(registry.Instance{ID: "web-1", Service: "web", Node: "n1", Address: "10.0.0.1", Port: 8080, Tags: []string{"primary", "v1"}, Meta: map[string]string{"zone": "a", "version": "1.0"}})
	c.put(registry.Instance{ID: "web-2", Service: "web", Node: "n1", Address: "10.0.0.2", Port: 8081, Tags: []string{"v1"}})
	c.put(registry.Instance{ID: "web-3", Service: "web", Node: "n6", Address: "fd00::3", Port: 8082, Tags: []string{"canary"}})
	c.put(registry.Instance{ID: "web-4", Service: "web", Node: "n1", Address: "10.0.0.4", Port: 8083, Tags: []string{"v1"}, Status: registry.StatusWarning})
	c.put(registry.Instance{ID: "web-5", Service: "web", Node: "n1", Address: "10.0.0.5", Port: 8084, Tags: []string{"old", "primary"}, Status: registry.StatusCritical})
	c.put(registry.Instance{ID: "db-1", Service: "db", Node: "n1", Address: "10.0.1.1", Port: 5432, Status: registry.StatusCritical})
	c.putNode(cluster.NodeInfo{Name: "n1", Address: "192.168.1.10"})
	c.putNode(cluster.NodeInfo{Name: "n6", Address: "fd00::10"})
	return c
}

// start runs a server on a free port of 127.0.0.1 until the test ends.
func start(t testing.TB, cat Catalog, mod func(*Config)) *Server {
	t.Helper()
	cfg := Config{Addr: "127.0.0.1:0", Sockets: 2}
	if mod != nil {
		mod(&cfg)
	}
	s, err := New(cfg, cat)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Listen(); err != nil {
		t.Fatal(err)
	}
	s.Serve()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	return s
}

// qopt adjusts a query before it is sent.
type qopt func(c *dns.Client, m *dns.Msg)

var (
	overTCP = func(c *dns.Client, m *dns.Msg) { c.Net = "tcp" }
	noRD    = func(c *dns.Client, m *dns.Msg) { m.RecursionDesired = false }
)

func edns(size uint16) qopt { return func(c *dns.Client, m *dns.Msg) { m.SetEdns0(size, false) } }

// query asks the server with miekg/dns's client.
func query(t testing.TB, addr, name string, qtype uint16, opts ...qopt) *dns.Msg {
	t.Helper()
	c := &dns.Client{Net: "udp", Timeout: 5 * time.Second}
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	for _, o := range opts {
		o(c, m)
	}
	r, _, err := c.Exchange(m, addr)
	if err != nil {
		t.Fatalf("%s %s: %v", name, dns.TypeToString[qtype], err)
	}
	if r.Id != m.Id || !r.Response {
		t.Fatalf("%s: response id %d (want %d), QR %v", name, r.Id, m.Id, r.Response)
	}
	return r
}

// rawUDP sends a packet as is and returns the reply as it came.
func rawUDP(t testing.TB, addr string, pkt []byte) []byte {
	t.Helper()
	c, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write(pkt); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 65535)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatalf("no reply: %v", err)
	}
	return buf[:n]
}

// rawQuery packs a query, sends it over UDP and returns the reply's bytes
// and the reply.
func rawQuery(t testing.TB, addr string, m *dns.Msg) ([]byte, *dns.Msg) {
	t.Helper()
	pkt, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	b := rawUDP(t, addr, pkt)
	r := new(dns.Msg)
	if err := r.Unpack(b); err != nil {
		t.Fatalf("reply does not unpack: %v", err)
	}
	return b, r
}

func TestConfigDefaultsAndValidation(t *testing.T) {
	s, err := New(Config{}, newMemCatalog())
	if err != nil {
		t.Fatal(err)
	}
	c := s.cfg
	if c.Addr != "127.0.0.1:8600" || c.Domain != "beacon." || c.TTL != 5 || c.Sockets != runtime.NumCPU() || c.MaxInFlight != DefaultMaxInFlight {
		t.Errorf("defaults: %+v", c)
	}
	if c.TCPMaxConns != 1024 || c.TCPMaxConnsPerClient != 16 || c.TCPIdleTimeout != 5*time.Second ||
		c.TCPMaxLifetime != 30*time.Second || c.TCPMaxQueries != 1000 || len(s.allow) != 2 || s.allow[0].String() != "127.0.0.0/8" || s.allow[1].String() != "::1/128" {
		t.Errorf("TCP and forwarding defaults: %+v, allow %v", c, s.allow)
	}
	s, err = New(Config{Domain: "Corp.Example", Recursors: []string{"10.0.0.53", "[fd00::53]:5353", " 127.0.0.1:53 "}}, newMemCatalog())
	if err != nil {
		t.Fatal(err)
	}
	if s.cfg.Domain != "corp.example." || strings.Join(s.cfg.Recursors, ",") != "10.0.0.53:53,[fd00::53]:5353,127.0.0.1:53" {
		t.Errorf("normalized: %q %q", s.cfg.Domain, s.cfg.Recursors)
	}
	for name, cfg := range map[string]Config{
		"addr":           {Addr: "8600"},
		"addr host":      {Addr: "dns.example:8600"},
		"addr port":      {Addr: "127.0.0.1:99999"},
		"domain":         {Domain: "bad..zone"},
		"root domain":    {Domain: "."},
		"recursor":       {Recursors: []string{"resolver.example:53"}},
		"recursor port":  {Recursors: []string{"10.0.0.53:0"}},
		"sockets":        {Sockets: -1},
		"in flight":      {MaxInFlight: -1},
		"tcp conns":      {TCPMaxConns: -1},
		"tcp per client": {TCPMaxConnsPerClient: -2},
		"tcp queries":    {TCPMaxQueries: -1},
		"tcp idle":       {TCPIdleTimeout: -time.Second},
		"tcp lifetime":   {TCPMaxLifetime: -time.Second},
		"forward allow":  {ForwardAllow: []string{"10.0.0.0/8", "corp"}},
	} {
		if _, err := New(cfg, newMemCatalog()); err == nil {
			t.Errorf("%s: %+v accepted", name, cfg)
		}
	}
	if _, err := New(Config{}, nil); err == nil {
		t.Error("no catalog accepted")
	}
}

func TestListenAddressInUse(t *testing.T) {
	// TCP taken.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	s, err := New(Config{Addr: l.Addr().String()}, newMemCatalog())
	if err != nil {
		t.Fatal(err)
	}
	err = s.Listen()
	if err == nil || !strings.Contains(err.Error(), "dns-addr") || !errors.Is(err, syscall.EADDRINUSE) {
		t.Fatalf("TCP port in use: %v", err)
	}

	// UDP taken (by a socket without SO_REUSEPORT), TCP free: ours must
	// not slip in beside it.
	var u net.PacketConn
	for u == nil {
		if u, err = net.ListenPacket("udp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
		if l, err := net.Listen("tcp", u.LocalAddr().String()); err != nil {
			u.Close() // TCP busy on that port: another
			u = nil
		} else {
			l.Close()
		}
	}
	defer u.Close()
	s, err = New(Config{Addr: u.LocalAddr().String(), Sockets: 2}, newMemCatalog())
	if err != nil {
		t.Fatal(err)
	}
	err = s.Listen()
	if err == nil || !strings.Contains(err.Error(), "dns-addr") || !strings.Contains(err.Error(), "udp") || !errors.Is(err, syscall.EADDRINUSE) {
		t.Fatalf("UDP port in use: %v", err)
	}
	// Nothing stays bound after a failed Listen.
	if s.tcp != nil || len(s.udp) != 0 {
		t.Fatalf("left bound: %v %v", s.tcp, s.udp)
	}
}

func TestSocketsShareThePort(t *testing.T) {
	s := start(t, fixture(), func(c *Config) { c.Sockets = 4 })
	if len(s.udp) != 4 {
		t.Fatalf("%d UDP sockets, want 4", len(s.udp))
	}
	// Many client sockets: the kernel spreads them over the 4; every one
	// is answered.
	for i := 0; i < 32; i++ {
		r := query(t, s.Addr(), "web.service.beacon.", dns.TypeA)
		if len(r.Answer) != 2 {
			t.Fatalf("query %d: %v", i, r)
		}
	}
}

func TestUnspecifiedAddress(t *testing.T) {
	// Bound to 0.0.0.0: replies come from the address asked (IP_PKTINFO).
	s := start(t, fixture(), func(c *Config) { c.Addr = "0.0.0.0:0" })
	_, port, _ := net.SplitHostPort(s.Addr())
	addr := net.JoinHostPort("127.0.0.1", port)
	r := query(t, addr, "web-1.web.service.beacon.", dns.TypeA)
	if len(r.Answer) != 1 {
		t.Fatalf("answer: %v", r)
	}
	r = query(t, addr, "web.service.beacon.", dns.TypeSRV, overTCP)
	if len(r.Answer) != 3 {
		t.Fatalf("tcp answer: %v", r)
	}
	// ns.<zone> is loopback when the server has no address of its own.
	if r := query(t, addr, "ns.beacon.", dns.TypeA); len(r.Answer) != 1 || r.Answer[0].(*dns.A).A.String() != "127.0.0.1" {
		t.Fatalf("ns: %v", r)
	}
	// Another address of the host: the client's socket, connected to it,
	// takes the reply only from it. The fast path (SRV) and the general
	// way (TXT) both.
	other := net.JoinHostPort("127.0.0.2", port)
	if r := query(t, other, "web.service.beacon.", dns.TypeSRV); len(r.Answer) != 3 {
		t.Fatalf("SRV asked of 127.0.0.2: %v", r)
	}
	if r := query(t, other, "web-1.web.service.beacon.", dns.TypeTXT); len(r.Answer) != 1 {
		t.Fatalf("TXT asked of 127.0.0.2: %v", r)
	}

	// Bound to ::, a dual-stack socket: IPv6 and IPv4 clients alike.
	s6 := start(t, fixture(), func(c *Config) { c.Addr = "[::]:0" })
	_, port6, _ := net.SplitHostPort(s6.Addr())
	for _, host := range []string{"::1", "127.0.0.1", "127.0.0.2"} {
		if r := query(t, net.JoinHostPort(host, port6), "web.service.beacon.", dns.TypeSRV); len(r.Answer) != 3 {
			t.Fatalf("SRV asked of %s on [::]: %v", host, r)
		}
	}
}

func TestShutdown(t *testing.T) {
	s, err := New(Config{Addr: "127.0.0.1:0"}, fixture())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Listen(); err != nil {
		t.Fatal(err)
	}
	s.Serve()
	addr := s.Addr()
	query(t, addr, "web.service.beacon.", dns.TypeA)
	// An idle TCP connection must not hold up shutdown.
	idle, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	query(t, addr, "web.service.beacon.", dns.TypeA, overTCP)
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatalf("second shutdown: %v", err)
	}
	if err := s.Listen(); !errors.Is(err, ErrClosed) {
		t.Fatalf("listen after shutdown: %v", err)
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("port still bound: %v", err)
	}
	l.Close()
	u, err := net.ListenPacket("udp", addr)
	if err != nil {
		t.Fatalf("UDP port still bound: %v", err)
	}
	u.Close()
}

// TestNoGoroutinePerPacket floods the server with queries and watches
// the goroutine count: it never grows, since UDP is answered by a fixed
// pool. (The bound is structural, so the assertion cannot flake.)
func TestNoGoroutinePerPacket(t *testing.T) {
	s := start(t, fixture(), func(c *Config) { c.Sockets = 2 })
	m := new(dns.Msg)
	m.SetQuestion("web.service.beacon.", dns.TypeSRV)
	pkt, _ := m.Pack()
	var clients []net.Conn
	for i := 0; i < 4; i++ {
		c, err := net.Dial("udp", s.Addr())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		clients = append(clients, c)
	}
	base := runtime.NumGoroutine()
	peak := base
	for i := 0; i < 4000; i++ {
		binary.BigEndian.PutUint16(pkt, uint16(i))
		_, _ = clients[i%len(clients)].Write(pkt)
		if i%50 == 0 {
			peak = max(peak, runtime.NumGoroutine())
		}
	}
	// The server still answers (over TCP: a UDP query could be dropped
	// while the socket's buffer is still full of the flood).
	query(t, s.Addr(), "web.service.beacon.", dns.TypeA, overTCP)
	if peak > base+2 {
		t.Fatalf("goroutines grew from %d to %d under a flood of UDP queries", base, peak)
	}
}

func TestIPv6Loopback(t *testing.T) {
	if l, err := net.Listen("tcp", "[::1]:0"); err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	} else {
		l.Close()
	}
	s := start(t, fixture(), func(c *Config) { c.Addr = "[::1]:0" })
	wantAddrs(t, "web", query(t, s.Addr(), "web.service.beacon.", dns.TypeA), "10.0.0.1", "10.0.0.2")
	// ns.<zone> is the server's own address.
	wantAddrs(t, "ns", query(t, s.Addr(), "ns.beacon.", dns.TypeAAAA), "::1")
}
