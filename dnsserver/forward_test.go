package dnsserver

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// upstream is a fake recursor on 127.0.0.1 (UDP and TCP): example.com A
// is 192.0.2.1, slow.example waits for release, anything else NXDOMAIN.
type upstream struct {
	addr    string
	arrived chan struct{}
	release chan struct{}
}

func startUpstream(t *testing.T) *upstream {
	t.Helper()
	u := &upstream{arrived: make(chan struct{}, 8), release: make(chan struct{})}
	h := dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		m.RecursionAvailable = true
		switch r.Question[0].Name {
		case "example.com.":
			m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: r.Question[0].Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 300}, A: net.IPv4(192, 0, 2, 1)})
		case "slow.example.":
			u.arrived <- struct{}{}
			<-u.release
			m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: r.Question[0].Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 300}, A: net.IPv4(192, 0, 2, 2)})
		default:
			m.Rcode = dns.RcodeNameError
		}
		_ = w.WriteMsg(m)
	})
	// UDP and TCP on one port: the UDP port picked may be taken on TCP.
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
	u.addr = pc.LocalAddr().String()
	return u
}

// closedPort is a UDP address nothing listens on: the kernel refuses at
// once rather than leaving the forwarder to time out.
func closedPort(t *testing.T) string {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := pc.LocalAddr().String()
	pc.Close()
	return addr
}

func TestForwarding(t *testing.T) {
	up := startUpstream(t)
	s := start(t, fixture(), func(c *Config) { c.Recursors = []string{closedPort(t), up.addr} })
	a := s.Addr()
	for _, opts := range [][]qopt{nil, {overTCP}, {edns(1232)}} {
		r := query(t, a, "example.com.", dns.TypeA, opts...)
		if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 || r.Answer[0].(*dns.A).A.String() != "192.0.2.1" || r.Authoritative || !r.RecursionAvailable {
			t.Fatalf("forwarded %v: %v", opts, r)
		}
	}
	if r := query(t, a, "Example.COM.", dns.TypeA); r.Question[0].Name != "Example.COM." {
		t.Fatalf("forwarded question %v", r.Question)
	}
	if r := query(t, a, "nope.example.", dns.TypeA); r.Rcode != dns.RcodeNameError {
		t.Fatalf("forwarded NXDOMAIN: %v", r)
	}
	// No recursion desired: not forwarded.
	if r := query(t, a, "example.com.", dns.TypeA, noRD); r.Rcode != dns.RcodeRefused {
		t.Fatalf("RD=0: %v", r)
	}
	// The zone is still answered here, with RA now set.
	r := query(t, a, "web.service.beacon.", dns.TypeA)
	if len(r.Answer) != 2 || !r.Authoritative || !r.RecursionAvailable {
		t.Fatalf("zone with recursors: %v", r)
	}
}

func TestForwardingFailure(t *testing.T) {
	s := start(t, fixture(), func(c *Config) { c.Recursors = []string{closedPort(t)} })
	for _, opts := range [][]qopt{nil, {overTCP}} {
		if r := query(t, s.Addr(), "example.com.", dns.TypeA, opts...); r.Rcode != dns.RcodeServerFailure {
			t.Fatalf("dead recursor %v: %v", opts, r)
		}
	}
}

// TestForwardingBounded holds one forwarded query at the upstream with
// MaxInFlight 1: the next is answered SERVFAIL at once, and the zone
// keeps being answered.
func TestForwardingBounded(t *testing.T) {
	up := startUpstream(t)
	s := start(t, fixture(), func(c *Config) { c.Recursors = []string{up.addr}; c.MaxInFlight = 1 })
	slow := make(chan *dns.Msg, 1)
	go func() {
		c := &dns.Client{Timeout: 10 * time.Second}
		m := new(dns.Msg)
		m.SetQuestion("slow.example.", dns.TypeA)
		r, _, _ := c.Exchange(m, s.Addr())
		slow <- r
	}()
	<-up.arrived // the slot is taken
	if r := query(t, s.Addr(), "example.com.", dns.TypeA); r.Rcode != dns.RcodeServerFailure {
		t.Fatalf("second forward: %v", r)
	}
	if r := query(t, s.Addr(), "web.service.beacon.", dns.TypeA); len(r.Answer) != 2 {
		t.Fatalf("zone while forwarding: %v", r)
	}
	close(up.release)
	if r := <-slow; r == nil || len(r.Answer) != 1 {
		t.Fatalf("slow forward: %v", r)
	}
	// The slot is free again.
	if r := query(t, s.Addr(), "example.com.", dns.TypeA); len(r.Answer) != 1 {
		t.Fatalf("after release: %v", r)
	}
}
