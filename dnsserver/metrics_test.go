package dnsserver

import (
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/beaconhq/beacon/internal/metricstest"
	"github.com/miekg/dns"
)

// Every answer counts once under its question's type and its rcode, and
// once in the histogram of its transport.
func TestQueriesCounted(t *testing.T) {
	s := start(t, fixture(), nil)
	addr := s.Addr()
	for range 3 {
		query(t, addr, "web.service.beacon.", dns.TypeSRV) // the fast path
	}
	query(t, addr, "nothing.service.beacon.", dns.TypeA)
	query(t, addr, "example.com.", dns.TypeA)
	query(t, addr, "web.service.beacon.", 65280)                        // NODATA, a private type
	query(t, addr, "web.service.beacon.", dns.TypeSRV, transportTCPOpt) // the general way
	m := new(dns.Msg)
	m.SetQuestion("web.service.beacon.", dns.TypeA)
	m.SetEdns0(1232, false)
	m.IsEdns0().SetVersion(1)
	if r, err := dns.Exchange(m, addr); err != nil || r.Rcode != dns.RcodeBadVers {
		t.Fatalf("EDNS version 1: %v, %v", r, err)
	}

	// An answer is counted just after it is sent: the client may read it
	// first.
	c := s.Metrics()
	for _, want := range []struct {
		qtype, rcode string
		n            float64
	}{
		{"SRV", "NOERROR", 4}, {"A", "NXDOMAIN", 1}, {"A", "REFUSED", 1}, {"other", "NOERROR", 1}, {"A", "BADVERS", 1},
	} {
		metricstest.Wait(t, c, 10*time.Second, "beacon_dns_queries_total", metricstest.Is(want.n), "qtype", want.qtype, "rcode", want.rcode)
	}
	metricstest.Wait(t, c, 10*time.Second, "beacon_dns_query_duration_seconds", metricstest.Is(7), "transport", "udp")
	metricstest.Wait(t, c, 10*time.Second, "beacon_dns_query_duration_seconds", metricstest.Is(1), "transport", "tcp")
}

var transportTCPOpt = func(c *dns.Client, m *dns.Msg) { c.Net = "tcp" }

// A client asking every type there is makes no more series than the
// fixed cells: the types beyond the list are all "other".
func TestQueryTypesBounded(t *testing.T) {
	s := start(t, fixture(), nil)
	conn, err := net.Dial("udp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	buf := make([]byte, 1500)
	const n = 500
	for i := range n {
		m := new(dns.Msg)
		m.SetQuestion(fmt.Sprintf("x%d.service.beacon.", i), uint16(1000+i*97))
		pkt, _ := m.Pack()
		if _, err := conn.Write(pkt); err != nil {
			t.Fatal(err)
		}
		_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := conn.Read(buf); err != nil {
			t.Fatal(err)
		}
	}
	metricstest.Wait(t, s.Metrics(), 10*time.Second, "beacon_dns_queries_total", metricstest.Is(n), "qtype", "other", "rcode", "NXDOMAIN")
	if series := metricstest.Series(t, s.Metrics(), "beacon_dns_queries_total"); len(series) != 1 {
		t.Errorf("%d series after %d types; want 1 (other, NXDOMAIN)", len(series), n)
	}
}

// Counting allocates nothing: the hot path stays without garbage.
func TestObserveAllocatesNothing(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts mean nothing under the race detector")
	}
	sh := newMetrics().newShard()
	q := new(dns.Msg)
	q.SetQuestion("web.service.beacon.", dns.TypeSRV)
	pkt, _ := q.Pack()
	start := clock()
	if allocs := testing.AllocsPerRun(1000, func() { sh.observe(pkt, dns.RcodeSuccess, transportUDP, start) }); allocs != 0 {
		t.Errorf("%.1f allocations per query counted", allocs)
	}
}

func TestQuestionType(t *testing.T) {
	q := new(dns.Msg)
	q.SetQuestion("a.b.c.", dns.TypeAAAA)
	pkt, _ := q.Pack()
	if got := questionType(pkt); got != dns.TypeAAAA {
		t.Errorf("questionType = %d", got)
	}
	for _, bad := range [][]byte{nil, pkt[:12], pkt[:len(pkt)-3], {0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 63}} {
		if got := questionType(bad); got != 0 {
			t.Errorf("questionType(%x) = %d, want 0", bad, got)
		}
	}
}

// BenchmarkObserve is what counting adds to each answer: the question's
// type read off the packet, two reads of the monotonic clock (most of
// it) and three uncontended atomic adds.
func BenchmarkObserve(b *testing.B) {
	m := newMetrics()
	q := new(dns.Msg)
	q.SetQuestion("web.service.beacon.", dns.TypeSRV)
	pkt, _ := q.Pack()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		sh := m.newShard() // as each UDP worker has
		for pb.Next() {
			sh.observe(pkt, dns.RcodeSuccess, transportUDP, clock())
		}
	})
}
