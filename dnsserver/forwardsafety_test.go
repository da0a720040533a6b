package dnsserver

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// testRecursor is a recursor on 127.0.0.1 (UDP and TCP) that counts the
// queries it receives. Without a target it answers example.com A itself;
// with one it forwards every query there, as it came (new id) or rebuilt
// from the question alone (as a resolver that sends its own query does:
// no EDNS0, so no option of the agent's survives).
type testRecursor struct {
	addr     string
	received atomic.Int64
	target   atomic.Pointer[string]
	rebuild  bool
}

func startRecursor(t *testing.T, rebuild bool) *testRecursor {
	t.Helper()
	r := &testRecursor{rebuild: rebuild}
	h := dns.HandlerFunc(func(w dns.ResponseWriter, q *dns.Msg) {
		r.received.Add(1)
		m := new(dns.Msg)
		m.SetReply(q)
		m.RecursionAvailable = true
		target := r.target.Load()
		switch {
		case target == nil && strings.EqualFold(q.Question[0].Name, "example.com."):
			m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: q.Question[0].Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 300}, A: net.IPv4(192, 0, 2, 1)})
		case target == nil:
			m.Rcode = dns.RcodeNameError
		default:
			up := q.Copy()
			if r.rebuild {
				up = new(dns.Msg)
				up.SetQuestion(q.Question[0].Name, q.Question[0].Qtype)
			}
			up.Id = dns.Id()
			c := &dns.Client{Net: "udp", Timeout: 2 * time.Second}
			if resp, _, err := c.Exchange(up, *target); err == nil {
				resp.Id = q.Id
				m = resp
			} else {
				m.Rcode = dns.RcodeServerFailure
			}
		}
		_ = w.WriteMsg(m)
	})
	var pc net.PacketConn
	var l net.Listener
	for attempt := 0; l == nil; attempt++ {
		var err error
		if pc, err = net.ListenPacket("udp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
		if l, err = net.Listen("tcp", pc.LocalAddr().String()); err != nil {
			pc.Close()
			if attempt == 20 {
				t.Fatal(err)
			}
		}
	}
	us := &dns.Server{PacketConn: pc, Handler: h}
	ts := &dns.Server{Listener: l, Handler: h}
	go func() { _ = us.ActivateAndServe() }()
	go func() { _ = ts.ActivateAndServe() }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = us.ShutdownContext(ctx)
		_ = ts.ShutdownContext(ctx)
	})
	r.addr = pc.LocalAddr().String()
	return r
}

func (r *testRecursor) forwardTo(addr string) { r.target.Store(&addr) }

// queryFrom asks addr from the loopback address from.
func queryFrom(t *testing.T, from, addr, name string, tcp bool, opts ...qopt) *dns.Msg {
	t.Helper()
	c := &dns.Client{Net: "udp", Timeout: 15 * time.Second, Dialer: &net.Dialer{LocalAddr: &net.UDPAddr{IP: net.ParseIP(from)}}}
	if tcp {
		c.Net, c.Dialer.LocalAddr = "tcp", &net.TCPAddr{IP: net.ParseIP(from)}
	}
	m := new(dns.Msg)
	m.SetQuestion(name, dns.TypeA)
	for _, o := range opts {
		o(c, m)
	}
	r, _, err := c.Exchange(m, addr)
	if err != nil {
		t.Fatalf("%s from %s (tcp %v): %v", name, from, tcp, err)
	}
	return r
}

// TestForwardingOnlyForAllowedClients: a client outside ForwardAllow is
// REFUSED (RA clear) and nothing reaches the recursor; an allowed one is
// forwarded; the zone is answered to both. With no ForwardAllow, loopback
// is allowed.
func TestForwardingOnlyForAllowedClients(t *testing.T) {
	rec := startRecursor(t, false)
	s := start(t, fixture(), func(c *Config) { c.Recursors = []string{rec.addr}; c.ForwardAllow = []string{"127.0.0.1"} })
	for _, tcp := range []bool{false, true} {
		r := queryFrom(t, "127.0.0.2", s.Addr(), "example.com.", tcp)
		if r.Rcode != dns.RcodeRefused || r.RecursionAvailable || len(r.Answer) != 0 {
			t.Fatalf("a client outside dns-forward-allow (tcp %v): %v", tcp, r)
		}
		if r := queryFrom(t, "127.0.0.2", s.Addr(), "web.service.beacon.", tcp); len(r.Answer) != 2 {
			t.Fatalf("the zone to a client outside dns-forward-allow (tcp %v): %v", tcp, r)
		}
	}
	if n := rec.received.Load(); n != 0 {
		t.Fatalf("the recursor received %d queries of a client not allowed", n)
	}
	for _, tcp := range []bool{false, true} {
		if r := queryFrom(t, "127.0.0.1", s.Addr(), "example.com.", tcp); len(r.Answer) != 1 {
			t.Fatalf("an allowed client (tcp %v): %v", tcp, r)
		}
	}

	def := start(t, fixture(), func(c *Config) { c.Recursors = []string{rec.addr} })
	if r := queryFrom(t, "127.0.0.2", def.Addr(), "example.com.", false); len(r.Answer) != 1 {
		t.Fatalf("loopback client, default dns-forward-allow: %v", r)
	}
	if _, err := New(Config{ForwardAllow: []string{"10.0.0.0/33"}}, newMemCatalog()); err == nil || !strings.Contains(err.Error(), "dns-forward-allow") {
		t.Fatalf("a bad network: %v", err)
	}
}

// TestForwardingNotToItself: a recursor that is the server's own address
// stops it at start, with a message naming dns-recursors.
func TestForwardingNotToItself(t *testing.T) {
	for _, c := range []struct {
		addr, recursor string
		self           bool
	}{
		{"127.0.0.1:8653", "127.0.0.1:8653", true},
		{"0.0.0.0:8653", "127.0.0.5:8653", true},
		{"[::]:8653", "[::1]:8653", true},
		{"localhost:8653", "127.0.0.1:8653", true},
		{":8653", "127.0.0.1:8653", true},
		{"127.0.0.1:8653", "127.0.0.2:8653", false},
		{"127.0.0.1:8653", "127.0.0.1:53", false},
		{"0.0.0.0:8653", "192.0.2.53:8653", false},
	} {
		_, err := New(Config{Addr: c.addr, Recursors: []string{c.recursor}}, newMemCatalog())
		switch {
		case c.self && (!errors.Is(err, ErrRecursorIsSelf) || !strings.HasPrefix(err.Error(), "dns-recursors: "+c.recursor)):
			t.Errorf("dns-addr %s, recursor %s: %v", c.addr, c.recursor, err)
		case !c.self && err != nil:
			t.Errorf("dns-addr %s, recursor %s refused: %v", c.addr, c.recursor, err)
		}
	}
	// With port 0 the port is known once bound: the check is then.
	if err := checkNotSelf([]string{"127.0.0.1:40000"}, "127.0.0.1:40000"); !errors.Is(err, ErrRecursorIsSelf) {
		t.Errorf("checkNotSelf: %v", err)
	}
}

// TestForwardingLoopThroughRecursor: the agent's recursor forwards back
// to the agent, directly or through a second recursor, passing the query
// on as it came or rebuilding it. One client query costs a few datagrams
// and ends in SERVFAIL, not a turn of the loop per forwarding slot.
func TestForwardingLoopThroughRecursor(t *testing.T) {
	for _, c := range []struct {
		name    string
		rebuild []bool // the recursors in the loop, in order
		tcp     bool
		opts    []qopt
	}{
		{name: "passes the query on", rebuild: []bool{false}},
		{name: "rebuilds the query", rebuild: []bool{true}},
		{name: "rebuilds an EDNS0 query over TCP", rebuild: []bool{true}, tcp: true, opts: []qopt{edns(1232)}},
		{name: "through two recursors", rebuild: []bool{false, true}},
	} {
		t.Run(c.name, func(t *testing.T) {
			var recs []*testRecursor
			for _, rb := range c.rebuild {
				recs = append(recs, startRecursor(t, rb))
			}
			s := start(t, fixture(), func(cfg *Config) { cfg.Recursors = []string{recs[0].addr} })
			for i, r := range recs {
				if i+1 < len(recs) {
					r.forwardTo(recs[i+1].addr)
				} else {
					r.forwardTo(s.Addr())
				}
			}
			r := queryFrom(t, "127.0.0.1", s.Addr(), "example.com.", c.tcp, c.opts...)
			if r.Rcode != dns.RcodeServerFailure {
				t.Fatalf("a query round a loop: %v", r)
			}
			// Once nothing is forwarded any more, the counts are final.
			waitFor(t, "forwarding done", func() bool {
				s.fwd.mu.Lock()
				defer s.fwd.mu.Unlock()
				return len(s.fwd.flights) == 0 && len(s.fwdSlots) == 0
			})
			for i, rec := range recs {
				t.Logf("recursor %d received %d queries", i, rec.received.Load())
				if n := rec.received.Load(); n > 3 {
					t.Errorf("recursor %d received %d queries for one client query", i, n)
				}
			}
			// Not forwarding loops any more, the zone is answered.
			if r := query(t, s.Addr(), "web.service.beacon.", dns.TypeA); len(r.Answer) != 2 {
				t.Fatalf("zone after the loop: %v", r)
			}
		})
	}
}
