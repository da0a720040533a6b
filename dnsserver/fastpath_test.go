package dnsserver

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/beaconhq/beacon/registry"
	"github.com/miekg/dns"
)

// agreeCatalog holds every shape of service the fast path must answer as
// the general way does: weights and priorities, groups far larger than
// an answer (uniform and skewed), both families, a port out of range,
// targets of every length, and the fuzz catalog's odd data.
func agreeCatalog() *memCatalog {
	c := fuzzCatalog()
	for i := range 40 {
		c.put(registry.Instance{ID: fmt.Sprintf("w-%d", i), Service: "weighted", Address: fmt.Sprintf("10.8.0.%d", i+1),
			Port: 100 + i, Weight: i%7 + 1, Priority: i % 3, Tags: []string{fmt.Sprintf("t%d", i%4)}})
	}
	for i := range 600 {
		c.put(registry.Instance{ID: fmt.Sprintf("many-%d", i), Service: "many", Address: fmt.Sprintf("10.10.%d.%d", i/200, i%200+1), Port: 1})
		w := 1
		if i == 3 {
			w = 5000
		}
		c.put(registry.Instance{ID: fmt.Sprintf("s%d", i), Service: "skew", Address: fmt.Sprintf("fd00::a:%x", i+1), Port: 2, Weight: w})
	}
	c.put(registry.Instance{ID: "p0", Service: "ports", Address: "10.9.0.1", Port: 0})
	c.put(registry.Instance{ID: "p1", Service: "ports", Address: "fd00::9", Port: 53})
	c.put(registry.Instance{ID: "p2", Service: "ports", Address: "10.9.0.3", Port: 70000})
	c.put(registry.Instance{ID: "only", Service: "portless", Address: "10.9.1.1", Port: 0})
	c.put(registry.Instance{ID: strings.Repeat("l", 63), Service: "long", Address: "10.9.2.1", Port: 1})
	c.put(registry.Instance{ID: "a.b", Service: "long", Address: "10.9.2.2", Port: 1})
	c.put(registry.Instance{ID: "a b\\", Service: "long", Address: "10.9.2.3", Port: 1})
	c.put(registry.Instance{ID: "x..y", Service: "badtarget", Address: "10.9.3.1", Port: 1})
	// One id ends with another: the general way compresses one glue owner
	// into the other's target.
	c.put(registry.Instance{ID: "eu.web-1", Service: "dots", Address: "10.9.4.1", Port: 80})
	c.put(registry.Instance{ID: "web-1", Service: "dots", Address: "10.9.4.2", Port: 80})
	return c
}

// agreeQueries are the packets TestFastPathAgrees asks: names of every
// kind, in three spellings, each type, class and EDNS0 form.
func agreeQueries(t testing.TB) [][]byte {
	names := []string{
		"web", "big", "mid", "odd", "weighted", "many", "skew", "ports", "portless", "long", "badtarget", "dots", "db", "nope",
		"_web._primary", "_web._tcp", "primary.web", "v1.web", "nosuchtag.web", "web-1.web", "t1.weighted", "_weighted._t2",
	}
	var pkts [][]byte
	for _, n := range names {
		for _, spell := range []string{n + ".service.beacon.", strings.ToUpper(n) + ".Service.BEACON.", n + ".service.beacon.x."} {
			for _, qtype := range []uint16{dns.TypeA, dns.TypeAAAA, dns.TypeSRV, dns.TypeTXT} {
				for _, size := range []int{-1, 0, 512, 600, 1232, 4096} {
					m := new(dns.Msg)
					m.SetQuestion(spell, qtype)
					m.Id = uint16(len(pkts))
					m.RecursionDesired = len(pkts)%2 == 0
					m.CheckingDisabled = len(pkts)%3 == 0
					if len(pkts)%5 == 0 {
						m.Question[0].Qclass = dns.ClassANY
					}
					if size >= 0 {
						m.SetEdns0(uint16(size), len(pkts)%4 == 0)
					}
					b, err := m.Pack()
					if err != nil {
						t.Fatal(err)
					}
					pkts = append(pkts, b)
				}
			}
		}
	}
	return pkts
}

// agree checks that whenever the fast path answers pkt, its answer is
// byte for byte the general way's, both drawing from the same random
// sequence. It reports whether the fast path answered.
func agree(t testing.TB, h *handler, pkt []byte, seed uint64) bool {
	fast, ok := h.fastAnswer(pkt, make([]byte, 0, 512), rand.New(rand.NewPCG(seed, 1)))
	if !ok {
		return false
	}
	general, fwd, _ := h.answerGeneral(pkt, false, make([]byte, 512), rand.New(rand.NewPCG(seed, 1)))
	if fwd != nil || !bytes.Equal(fast, general) {
		f, g := new(dns.Msg), new(dns.Msg)
		ferr, gerr := f.Unpack(fast), g.Unpack(general)
		t.Fatalf("query % x\nfast path (%d bytes, %v):\n%v\ngeneral way (%d bytes, %v, forward %v):\n%v",
			pkt, len(fast), ferr, f, len(general), gerr, fwd != nil, g)
	}
	return true
}

func TestFastPathAgrees(t *testing.T) {
	s, err := New(Config{}, agreeCatalog())
	if err != nil {
		t.Fatal(err)
	}
	pkts := agreeQueries(t)
	taken := 0
	for i, pkt := range pkts {
		for seed := range uint64(3) {
			if agree(t, s.h, pkt, uint64(i)*3+seed) {
				taken++
			}
		}
	}
	// Every size a client may offer, so that each boundary of fit (glue
	// that just fits, an answer that just does not) is met.
	for size := dns.MinMsgSize - 1; size <= advertisedUDPSize+1; size++ {
		for _, c := range []struct {
			name  string
			qtype uint16
		}{{"mid.service.beacon.", dns.TypeSRV}, {"weighted.service.beacon.", dns.TypeSRV}, {"big.service.beacon.", dns.TypeA}, {"skew.service.beacon.", dns.TypeAAAA}} {
			m := new(dns.Msg)
			m.SetQuestion(c.name, c.qtype)
			m.SetEdns0(uint16(size), false)
			b, _ := m.Pack()
			if !agree(t, s.h, b, uint64(size)) {
				t.Fatalf("%s %s at %d bytes went the general way", c.name, dns.TypeToString[c.qtype], size)
			}
		}
	}
	// Every spelling of the names in the zone with a positive answer, for
	// A, AAAA or SRV, goes the fast way: it must not have quietly become
	// the general way for all of them.
	if taken < len(pkts)/4 {
		t.Fatalf("the fast path answered %d of %d", taken, 3*len(pkts))
	}
	for _, c := range []struct {
		name  string
		qtype uint16
		edns  bool
	}{{"web.service.beacon.", dns.TypeSRV, true}, {"WEB.service.beacon.", dns.TypeA, false}, {"_web._primary.service.beacon.", dns.TypeSRV, true}} {
		m := new(dns.Msg)
		m.SetQuestion(c.name, c.qtype)
		if c.edns {
			m.SetEdns0(1232, false)
		}
		b, _ := m.Pack()
		if !agree(t, s.h, b, 1) {
			t.Fatalf("%s %s went the general way", c.name, dns.TypeToString[c.qtype])
		}
	}
}

// FuzzFastPath: for any packet, the fast path declines or answers as the
// general way does.
func FuzzFastPath(f *testing.F) {
	for i, pkt := range agreeQueries(f) {
		if i%7 == 0 {
			f.Add(pkt, uint64(i))
		}
	}
	s, err := New(Config{}, agreeCatalog())
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, pkt []byte, seed uint64) {
		agree(t, s.h, pkt, seed)
	})
}

// TestFastPathAllocatesNothing: the fast path's whole point. Each shape
// of answer: whole, glue dropped, truncated, drawn few out of many.
func TestFastPathAllocatesNothing(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts mean nothing under the race detector")
	}
	s, err := New(Config{}, agreeCatalog())
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 0, advertisedUDPSize)
	for _, c := range []struct {
		name  string
		qtype uint16
		edns  bool
	}{
		{"web.service.beacon.", dns.TypeSRV, true}, {"mid.service.beacon.", dns.TypeSRV, false},
		{"big.service.beacon.", dns.TypeA, false}, {"many.service.beacon.", dns.TypeSRV, true},
		{"Skew.service.beacon.", dns.TypeAAAA, true}, {"t2.weighted.service.beacon.", dns.TypeSRV, true},
	} {
		m := new(dns.Msg)
		m.SetQuestion(c.name, c.qtype)
		if c.edns {
			m.SetEdns0(1232, false)
		}
		pkt, _ := m.Pack()
		if _, fwd, _ := s.h.answer(pkt, false, buf); fwd != nil {
			t.Fatalf("%s: forwarded", c.name)
		}
		allocs := testing.AllocsPerRun(200, func() {
			if _, ok := s.h.fastAnswer(pkt, buf, nil); !ok {
				t.Fatalf("%s %s went the general way", c.name, dns.TypeToString[c.qtype])
			}
		})
		if allocs != 0 {
			t.Errorf("%s %s: %.0f allocations per answer", c.name, dns.TypeToString[c.qtype], allocs)
		}
	}
}

// TestServeUDPAllocatesNothing counts the allocations of the whole
// process while a real client asks over a real socket: the server's
// read-answer-write loop adds none per query.
func TestServeUDPAllocatesNothing(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts mean nothing under the race detector")
	}
	m := new(dns.Msg)
	m.SetQuestion("web.service.beacon.", dns.TypeSRV)
	m.SetEdns0(1232, false)
	pkt, _ := m.Pack()
	// Bound to an address, and bound to 0.0.0.0 or :: (the reply names
	// its source address in a control message).
	for _, c := range []struct{ bind, ask string }{{"127.0.0.1:0", "127.0.0.1"}, {"0.0.0.0:0", "127.0.0.2"}, {"[::]:0", "::1"}} {
		srv := start(t, agreeCatalog(), func(cfg *Config) { cfg.Addr = c.bind })
		_, port, _ := net.SplitHostPort(srv.Addr())
		conn, err := net.Dial("udp", net.JoinHostPort(c.ask, port))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		buf := make([]byte, 1500)
		ask := func(n int) {
			for range n {
				if _, err := conn.Write(pkt); err != nil {
					t.Fatal(err)
				}
				_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
				if _, err := conn.Read(buf); err != nil {
					t.Fatalf("%s: %v", c.bind, err)
				}
			}
		}
		ask(100) // every worker warm
		const n = 2000
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		ask(n)
		runtime.ReadMemStats(&after)
		// The client's Write, Read and SetReadDeadline allocate nothing
		// either; the runtime and the test framework may, a little.
		if perQuery := float64(after.Mallocs-before.Mallocs) / n; perQuery > 0.5 {
			t.Errorf("bound to %s: %.2f allocations per query in the process", c.bind, perQuery)
		}
	}
}
