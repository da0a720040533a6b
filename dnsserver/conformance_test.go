package dnsserver

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/beaconhq/beacon/registry"
	"github.com/miekg/dns"
)

// addrs lists the A and AAAA data of records, sorted.
func addrs(rrs []dns.RR) []string {
	var out []string
	for _, rr := range rrs {
		switch rr := rr.(type) {
		case *dns.A:
			out = append(out, rr.A.String())
		case *dns.AAAA:
			out = append(out, rr.AAAA.String())
		}
	}
	slices.Sort(out)
	return out
}

func wantAddrs(t *testing.T, what string, r *dns.Msg, want ...string) {
	t.Helper()
	if r.Rcode != dns.RcodeSuccess || !r.Authoritative {
		t.Fatalf("%s: rcode %s, AA %v", what, dns.RcodeToString[r.Rcode], r.Authoritative)
	}
	if got := addrs(r.Answer); !slices.Equal(got, want) {
		t.Fatalf("%s: answers %v, want %v", what, got, want)
	}
}

// wantNegative checks an NXDOMAIN or NODATA: that rcode, no answer, the
// zone's SOA alone in authority.
func wantNegative(t *testing.T, what string, r *dns.Msg, rcode int) {
	t.Helper()
	if r.Rcode != rcode {
		t.Fatalf("%s: rcode %s, want %s", what, dns.RcodeToString[r.Rcode], dns.RcodeToString[rcode])
	}
	if len(r.Answer) != 0 || !r.Authoritative {
		t.Fatalf("%s: answer %v, AA %v", what, r.Answer, r.Authoritative)
	}
	if len(r.Ns) != 1 {
		t.Fatalf("%s: authority %v, want the SOA", what, r.Ns)
	}
	soa, ok := r.Ns[0].(*dns.SOA)
	if !ok || soa.Hdr.Name != "beacon." || soa.Ns != "ns.beacon." {
		t.Fatalf("%s: authority %v", what, r.Ns[0])
	}
}

func srvTargets(r *dns.Msg) []string {
	var out []string
	for _, rr := range r.Answer {
		if s, ok := rr.(*dns.SRV); ok {
			out = append(out, s.Target)
		}
	}
	return out
}

func TestServiceName(t *testing.T) {
	s := start(t, fixture(), nil)
	a := s.Addr()
	wantAddrs(t, "A", query(t, a, "web.service.beacon.", dns.TypeA), "10.0.0.1", "10.0.0.2")
	wantAddrs(t, "AAAA", query(t, a, "web.service.beacon.", dns.TypeAAAA), "fd00::3")

	r := query(t, a, "web.service.beacon.", dns.TypeSRV)
	if r.Rcode != dns.RcodeSuccess || !r.Authoritative || r.Truncated || len(r.Answer) != 3 {
		t.Fatalf("SRV: %v", r)
	}
	ports := map[string]uint16{}
	for _, rr := range r.Answer {
		srv := rr.(*dns.SRV)
		if srv.Hdr.Name != "web.service.beacon." || srv.Priority != 0 || srv.Weight != 1 {
			t.Errorf("SRV record %v", srv)
		}
		ports[srv.Target] = srv.Port
	}
	want := map[string]uint16{"web-1.web.service.beacon.": 8080, "web-2.web.service.beacon.": 8081, "web-3.web.service.beacon.": 8082}
	if fmt.Sprint(ports) != fmt.Sprint(want) {
		t.Fatalf("SRV targets %v, want %v", ports, want)
	}

	r = query(t, a, "web.service.beacon.", dns.TypeTXT)
	if len(r.Answer) != 1 {
		t.Fatalf("TXT: %v", r)
	}
	if txt := r.Answer[0].(*dns.TXT).Txt; !slices.Equal(txt, []string{"version=1.0", "zone=a"}) {
		t.Fatalf("TXT %q", txt)
	}
	// The instance name answers its own meta too.
	if r := query(t, a, "web-1.web.service.beacon.", dns.TypeTXT); len(r.Answer) != 1 {
		t.Fatalf("instance TXT: %v", r)
	}
}

func TestGlue(t *testing.T) {
	s := start(t, fixture(), nil)
	r := query(t, s.Addr(), "web.service.beacon.", dns.TypeSRV)
	glue := map[string]string{}
	for _, rr := range r.Extra {
		switch rr := rr.(type) {
		case *dns.A:
			glue[rr.Hdr.Name] = rr.A.String()
		case *dns.AAAA:
			glue[rr.Hdr.Name] = rr.AAAA.String()
		}
	}
	want := map[string]string{"web-1.web.service.beacon.": "10.0.0.1", "web-2.web.service.beacon.": "10.0.0.2", "web-3.web.service.beacon.": "fd00::3"}
	if fmt.Sprint(glue) != fmt.Sprint(want) {
		t.Fatalf("glue %v, want %v", glue, want)
	}
	// Every target resolves, to its glue.
	for _, target := range srvTargets(r) {
		qtype := dns.TypeA
		if strings.Contains(glue[target], ":") {
			qtype = dns.TypeAAAA
		}
		wantAddrs(t, target, query(t, s.Addr(), target, qtype), glue[target])
	}
}

func TestTagFilter(t *testing.T) {
	s := start(t, fixture(), nil)
	a := s.Addr()
	wantAddrs(t, "primary", query(t, a, "primary.web.service.beacon.", dns.TypeA), "10.0.0.1") // web-5 is critical
	wantAddrs(t, "canary", query(t, a, "canary.web.service.beacon.", dns.TypeAAAA), "fd00::3")
	if r := query(t, a, "v1.web.service.beacon.", dns.TypeSRV); len(r.Answer) != 2 {
		t.Fatalf("v1 SRV: %v", r)
	}
	wantNegative(t, "unknown tag", query(t, a, "nope.web.service.beacon.", dns.TypeA), dns.RcodeNameError)
	// A tag carried only by an unhealthy instance is known: NODATA.
	wantNegative(t, "tag of a critical instance", query(t, a, "old.web.service.beacon.", dns.TypeA), dns.RcodeSuccess)
}

func TestRFC2782Names(t *testing.T) {
	s := start(t, fixture(), nil)
	a := s.Addr()
	for _, name := range []string{"_web._tcp.service.beacon.", "_web._udp.service.beacon."} {
		r := query(t, a, name, dns.TypeSRV)
		if len(r.Answer) != 3 || len(r.Extra) != 3 {
			t.Fatalf("%s: %v", name, r)
		}
	}
	r := query(t, a, "_web._primary.service.beacon.", dns.TypeSRV)
	if got := srvTargets(r); !slices.Equal(got, []string{"web-1.web.service.beacon."}) {
		t.Fatalf("_web._primary: %v", got)
	}
	wantNegative(t, "_nope._tcp", query(t, a, "_nope._tcp.service.beacon.", dns.TypeSRV), dns.RcodeNameError)
	wantNegative(t, "_web._nope", query(t, a, "_web._nope.service.beacon.", dns.TypeSRV), dns.RcodeNameError)
	// The parent of an RFC 2782 name exists without records.
	wantNegative(t, "_tcp.service", query(t, a, "_tcp.service.beacon.", dns.TypeSRV), dns.RcodeSuccess)
}

func TestInstanceName(t *testing.T) {
	s := start(t, fixture(), nil)
	a := s.Addr()
	wantAddrs(t, "web-1 A", query(t, a, "web-1.web.service.beacon.", dns.TypeA), "10.0.0.1")
	wantAddrs(t, "web-3 AAAA", query(t, a, "web-3.web.service.beacon.", dns.TypeAAAA), "fd00::3")
	wantNegative(t, "web-3 A", query(t, a, "web-3.web.service.beacon.", dns.TypeA), dns.RcodeSuccess)
	wantNegative(t, "critical instance", query(t, a, "web-5.web.service.beacon.", dns.TypeA), dns.RcodeSuccess)
	wantNegative(t, "warning instance", query(t, a, "web-4.web.service.beacon.", dns.TypeA), dns.RcodeSuccess)
	wantNegative(t, "instance of another service", query(t, a, "db-1.web.service.beacon.", dns.TypeA), dns.RcodeNameError)
}

func TestNodeName(t *testing.T) {
	s := start(t, fixture(), nil)
	a := s.Addr()
	wantAddrs(t, "n1", query(t, a, "n1.node.beacon.", dns.TypeA), "192.168.1.10")
	wantAddrs(t, "n6", query(t, a, "n6.node.beacon.", dns.TypeAAAA), "fd00::10")
	wantNegative(t, "n1 AAAA", query(t, a, "n1.node.beacon.", dns.TypeAAAA), dns.RcodeSuccess)
	wantNegative(t, "unknown node", query(t, a, "n9.node.beacon.", dns.TypeA), dns.RcodeNameError)
}

func TestApex(t *testing.T) {
	s := start(t, fixture(), nil)
	a := s.Addr()
	r := query(t, a, "beacon.", dns.TypeSOA)
	if len(r.Answer) != 1 || !r.Authoritative {
		t.Fatalf("SOA: %v", r)
	}
	soa := r.Answer[0].(*dns.SOA)
	if soa.Ns != "ns.beacon." || soa.Mbox != "hostmaster.beacon." || soa.Minttl != 5 || soa.Hdr.Ttl != 5 {
		t.Fatalf("SOA %v", soa)
	}
	r = query(t, a, "beacon.", dns.TypeNS)
	if len(r.Answer) != 1 || r.Answer[0].(*dns.NS).Ns != "ns.beacon." {
		t.Fatalf("NS: %v", r)
	}
	if got := addrs(r.Extra); !slices.Equal(got, []string{"127.0.0.1"}) || r.Extra[0].Header().Name != "ns.beacon." {
		t.Fatalf("NS glue: %v", r.Extra)
	}
	wantAddrs(t, "ns", query(t, a, "ns.beacon.", dns.TypeA), "127.0.0.1")
	wantNegative(t, "apex A", query(t, a, "beacon.", dns.TypeA), dns.RcodeSuccess)
}

func TestNXDOMAINAndNODATA(t *testing.T) {
	s := start(t, fixture(), nil)
	a := s.Addr()
	for _, name := range []string{
		"nope.service.beacon.", "x.nope.service.beacon.", "web.nope.beacon.", "nope.beacon.",
		"a.b.web.service.beacon.", "a.b.c.d.e.beacon.", `we\.b.service.beacon.`,
	} {
		wantNegative(t, name, query(t, a, name, dns.TypeA), dns.RcodeNameError)
	}
	for _, c := range []struct {
		name  string
		qtype uint16
	}{
		{"web.service.beacon.", dns.TypeMX},
		{"web.service.beacon.", dns.TypeCNAME},
		{"db.service.beacon.", dns.TypeA}, // known, nothing healthy
		{"db.service.beacon.", dns.TypeSRV},
		{"service.beacon.", dns.TypeA}, // empty non-terminals
		{"node.beacon.", dns.TypeA},
		{"beacon.", dns.TypeMX},
	} {
		wantNegative(t, c.name+" "+dns.TypeToString[c.qtype], query(t, a, c.name, c.qtype), dns.RcodeSuccess)
	}
}

func TestIncludeWarning(t *testing.T) {
	cat := fixture()
	strict := start(t, cat, nil)
	lax := start(t, cat, func(c *Config) { c.IncludeWarning = true })
	wantAddrs(t, "passing only", query(t, strict.Addr(), "web.service.beacon.", dns.TypeA), "10.0.0.1", "10.0.0.2")
	wantAddrs(t, "with warning", query(t, lax.Addr(), "web.service.beacon.", dns.TypeA), "10.0.0.1", "10.0.0.2", "10.0.0.4")
	wantAddrs(t, "warning instance", query(t, lax.Addr(), "web-4.web.service.beacon.", dns.TypeA), "10.0.0.4")
	if r := query(t, lax.Addr(), "v1.web.service.beacon.", dns.TypeSRV); len(r.Answer) != 3 {
		t.Fatalf("tag with warning: %v", r)
	}
}

func TestTTL(t *testing.T) {
	s := start(t, fixture(), func(c *Config) { c.TTL = 42 })
	a := s.Addr()
	r := query(t, a, "web.service.beacon.", dns.TypeSRV)
	for _, rr := range append(r.Answer, r.Extra...) {
		if rr.Header().Ttl != 42 {
			t.Fatalf("TTL of %v", rr)
		}
	}
	r = query(t, a, "nope.service.beacon.", dns.TypeA)
	if soa := r.Ns[0].(*dns.SOA); soa.Hdr.Ttl != 42 || soa.Minttl != 42 {
		t.Fatalf("negative TTL: %v", soa)
	}
	// The default is 5 seconds.
	d := start(t, fixture(), nil)
	if r := query(t, d.Addr(), "n1.node.beacon.", dns.TypeA); r.Answer[0].Header().Ttl != 5 {
		t.Fatalf("default TTL: %v", r.Answer[0])
	}
}

func TestWeightedShuffle(t *testing.T) {
	cat := newMemCatalog()
	cat.put(registry.Instance{ID: "heavy", Service: "ws", Address: "10.1.0.1", Port: 1, Weight: 9})
	cat.put(registry.Instance{ID: "light", Service: "ws", Address: "10.1.0.2", Port: 2, Weight: 1})
	cat.put(registry.Instance{ID: "backup", Service: "ws", Address: "10.1.0.3", Port: 3, Weight: 100, Priority: 1})
	s := start(t, cat, nil)
	const n = 400
	first := map[string]int{}
	for range n {
		r := query(t, s.Addr(), "ws.service.beacon.", dns.TypeSRV)
		targets := srvTargets(r)
		if len(targets) != 3 || targets[2] != "backup.ws.service.beacon." {
			t.Fatalf("priority order: %v", targets)
		}
		first[targets[0]]++
	}
	// heavy comes first with probability 0.9: 360 expected of 400. Below
	// 280 or light never first would take odds below 1e-18.
	heavy, light := first["heavy.ws.service.beacon."], first["light.ws.service.beacon."]
	if heavy < 280 || light < 1 {
		t.Fatalf("heavy first %d times, light first %d times of %d", heavy, light, n)
	}
}

func TestTCP(t *testing.T) {
	s := start(t, fixture(), nil)
	r := query(t, s.Addr(), "web.service.beacon.", dns.TypeSRV, overTCP)
	if len(r.Answer) != 3 || len(r.Extra) != 3 {
		t.Fatalf("SRV over TCP: %v", r)
	}
	// Several queries on one connection.
	co, err := dns.Dial("tcp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer co.Close()
	for _, name := range []string{"web.service.beacon.", "n1.node.beacon.", "nope.service.beacon."} {
		m := new(dns.Msg)
		m.SetQuestion(name, dns.TypeA)
		if err := co.WriteMsg(m); err != nil {
			t.Fatal(err)
		}
		r, err := co.ReadMsg()
		if err != nil || r.Id != m.Id {
			t.Fatalf("%s on a shared connection: %v %v", name, r, err)
		}
	}
}

// bigCatalog has service "big" with n instances, and "mid" with m
// instances of long ids.
func bigCatalog(n, m int) *memCatalog {
	cat := fixture()
	for i := range n {
		cat.put(registry.Instance{ID: fmt.Sprintf("big-%03d", i), Service: "big", Address: fmt.Sprintf("10.2.%d.%d", i/200, i%200+1), Port: 9000 + i})
	}
	for i := range m {
		id := fmt.Sprintf("mid-%02d-%s", i, strings.Repeat("x", 40))
		cat.put(registry.Instance{ID: id, Service: "mid", Address: fmt.Sprintf("10.3.0.%d", i+1), Port: 7000 + i})
	}
	return cat
}

func TestEDNS0(t *testing.T) {
	s := start(t, bigCatalog(100, 0), nil)
	a := s.Addr()

	// Advertised: 1232, in every response to a query with EDNS0.
	r := query(t, a, "web.service.beacon.", dns.TypeA, edns(4096))
	if o := r.IsEdns0(); o == nil || o.UDPSize() != 1232 || o.Version() != 0 {
		t.Fatalf("OPT: %v", r.IsEdns0())
	}
	if r := query(t, a, "web.service.beacon.", dns.TypeA); r.IsEdns0() != nil {
		t.Fatal("OPT without EDNS0 in the query")
	}
	// The DO bit is copied (RFC 3225).
	m := new(dns.Msg)
	m.SetQuestion("web.service.beacon.", dns.TypeA)
	m.SetEdns0(1232, true)
	if _, r := rawQuery(t, a, m); r.IsEdns0() == nil || !r.IsEdns0().Do() {
		t.Fatal("DO bit not copied")
	}

	// Honoured: the answer fills but never exceeds what the client takes;
	// below 512 counts as 512, above 1232 as 1232.
	for _, c := range []struct {
		size     uint16 // 0: no EDNS0
		min, max int
	}{{0, 400, 512}, {100, 400, 512}, {800, 700, 800}, {1232, 1100, 1232}, {4096, 1100, 1232}} {
		m := new(dns.Msg)
		m.SetQuestion("big.service.beacon.", dns.TypeA)
		if c.size > 0 {
			m.SetEdns0(c.size, false)
		}
		b, r := rawQuery(t, a, m)
		if len(b) < c.min || len(b) > c.max || !r.Truncated {
			t.Fatalf("client size %d: %d bytes (want %d to %d), TC %v", c.size, len(b), c.min, c.max, r.Truncated)
		}
	}
}

func TestTruncation(t *testing.T) {
	const mid, big = 5, 60
	s := start(t, bigCatalog(big, mid), nil)
	a := s.Addr()

	// mid: its SRV answer fits in 512 bytes, the answer and all its glue
	// do not (checked over TCP first, so the case is what it claims).
	full := query(t, a, "mid.service.beacon.", dns.TypeSRV, overTCP)
	if len(full.Answer) != mid || len(full.Extra) != mid {
		t.Fatalf("mid over TCP: %d answers, %d glue", len(full.Answer), len(full.Extra))
	}
	full.Compress = true
	if full.Len() <= 512 {
		t.Fatalf("precondition: the full mid answer is %d bytes", full.Len())
	}
	// Over UDP without EDNS0: glue goes first, the answer stays whole, no TC.
	b, r := rawQuery(t, a, func() *dns.Msg { m := new(dns.Msg); m.SetQuestion("mid.service.beacon.", dns.TypeSRV); return m }())
	if r.Truncated || len(r.Answer) != mid || len(r.Extra) >= mid || len(b) > 512 {
		t.Fatalf("mid over UDP: TC %v, %d answers, %d glue, %d bytes", r.Truncated, len(r.Answer), len(r.Extra), len(b))
	}

	// big: the answer itself does not fit: TC, and TCP gives it all.
	b, r = rawQuery(t, a, func() *dns.Msg { m := new(dns.Msg); m.SetQuestion("big.service.beacon.", dns.TypeSRV); return m }())
	if !r.Truncated || len(r.Answer) >= big || len(r.Extra) != 0 || len(b) > 512 {
		t.Fatalf("big over UDP: TC %v, %d answers, %d glue, %d bytes", r.Truncated, len(r.Answer), len(r.Extra), len(b))
	}
	r = query(t, a, "big.service.beacon.", dns.TypeSRV, edns(1232))
	if !r.Truncated || r.IsEdns0() == nil {
		t.Fatalf("big over UDP with EDNS0: TC %v, OPT %v", r.Truncated, r.IsEdns0())
	}
	r = query(t, a, "big.service.beacon.", dns.TypeSRV, overTCP)
	if r.Truncated || len(r.Answer) != big || len(r.Extra) != big {
		t.Fatalf("big over TCP: TC %v, %d answers, %d glue", r.Truncated, len(r.Answer), len(r.Extra))
	}
	// A: the same rule.
	if r := query(t, a, "big.service.beacon.", dns.TypeA, overTCP); len(r.Answer) != big || r.Truncated {
		t.Fatalf("big A over TCP: %d answers, TC %v", len(r.Answer), r.Truncated)
	}
}

func TestRefusedOutsideZone(t *testing.T) {
	s := start(t, fixture(), nil)
	for _, name := range []string{"example.com.", ".", "beacon.example.", "web.service.consul.", `web\.beacon.`} {
		r := query(t, s.Addr(), name, dns.TypeA)
		if r.Rcode != dns.RcodeRefused || r.Authoritative || len(r.Answer) != 0 || r.RecursionAvailable {
			t.Fatalf("%s: %v", name, r)
		}
	}
	// Another class, and zone transfers, are refused inside the zone too.
	r := query(t, s.Addr(), "web.service.beacon.", dns.TypeA, func(c *dns.Client, m *dns.Msg) { m.Question[0].Qclass = dns.ClassCHAOS })
	if r.Rcode != dns.RcodeRefused {
		t.Fatalf("CHAOS: %v", r)
	}
	r = query(t, s.Addr(), "beacon.", dns.TypeAXFR, overTCP)
	if r.Rcode != dns.RcodeRefused {
		t.Fatalf("AXFR: %v", r)
	}
}

func TestFormErr(t *testing.T) {
	s := start(t, fixture(), nil)
	q := func(name string) []byte {
		m := new(dns.Msg)
		m.SetQuestion(name, dns.TypeA)
		b, _ := m.Pack()
		return b
	}
	two := q("web.service.beacon.")
	two[5] = 2 // QDCOUNT 2, the second question appended
	two = append(two, q("db.service.beacon.")[12:]...)
	twoOpt := new(dns.Msg)
	twoOpt.SetQuestion("web.service.beacon.", dns.TypeA)
	twoOpt.SetEdns0(1232, false)
	twoOpt.Extra = append(twoOpt.Extra, twoOpt.Extra[0])
	twoOptB, _ := twoOpt.Pack()

	for name, pkt := range map[string][]byte{
		"no question":     {0xbe, 0xef, 0x01, 0x00, 0, 0, 0, 0, 0, 0, 0, 0},
		"two questions":   two,
		"cut question":    q("web.service.beacon.")[:20],
		"two OPT records": twoOptB,
	} {
		pkt = append([]byte(nil), pkt...)
		pkt[0], pkt[1] = 0xbe, 0xef
		r := new(dns.Msg)
		if err := r.Unpack(rawUDP(t, s.Addr(), pkt)); err != nil {
			t.Fatalf("%s: reply does not unpack: %v", name, err)
		}
		if r.Rcode != dns.RcodeFormatError || r.Id != 0xbeef || !r.Response || len(r.Answer) != 0 {
			t.Fatalf("%s: %v", name, r)
		}
	}
}

func TestNotImp(t *testing.T) {
	s := start(t, fixture(), nil)
	for _, op := range []int{dns.OpcodeIQuery, dns.OpcodeStatus, dns.OpcodeNotify, dns.OpcodeUpdate, 15} {
		m := new(dns.Msg)
		m.SetQuestion("beacon.", dns.TypeSOA)
		m.Opcode = op
		_, r := rawQuery(t, s.Addr(), m)
		if r.Rcode != dns.RcodeNotImplemented || r.Opcode != op || r.Id != m.Id || len(r.Answer) != 0 {
			t.Fatalf("opcode %d: %v", op, r)
		}
	}
}

func TestBadVers(t *testing.T) {
	s := start(t, fixture(), nil)
	m := new(dns.Msg)
	m.SetQuestion("web.service.beacon.", dns.TypeA)
	m.SetEdns0(1232, false)
	m.IsEdns0().SetVersion(1)
	_, r := rawQuery(t, s.Addr(), m)
	o := r.IsEdns0()
	if r.Rcode != dns.RcodeBadVers || o == nil || o.Version() != 0 || len(r.Answer) != 0 {
		t.Fatalf("EDNS version 1: rcode %s, OPT %v, answer %v", dns.RcodeToString[r.Rcode], o, r.Answer)
	}
}

func TestANY(t *testing.T) {
	s := start(t, fixture(), nil)
	for _, name := range []string{"web.service.beacon.", "web-1.web.service.beacon.", "n1.node.beacon.", "beacon."} {
		r := query(t, s.Addr(), name, dns.TypeANY)
		if len(r.Answer) != 1 {
			t.Fatalf("%s ANY: %v", name, r)
		}
		h, ok := r.Answer[0].(*dns.HINFO)
		if !ok || h.Cpu != "RFC8482" || h.Hdr.Name != name {
			t.Fatalf("%s ANY: %v", name, r.Answer[0])
		}
	}
	wantNegative(t, "ANY unknown", query(t, s.Addr(), "nope.service.beacon.", dns.TypeANY), dns.RcodeNameError)
}

func TestCaseEcho(t *testing.T) {
	s := start(t, fixture(), nil)
	for _, c := range []struct {
		name  string
		qtype uint16
		n     int
	}{
		{"WeB.SeRvIcE.BeAcOn.", dns.TypeA, 2},
		{"_WEB._Tcp.Service.BEACON.", dns.TypeSRV, 3},
		{"Web-1.WEB.service.beacon.", dns.TypeA, 1},
		{"N1.Node.Beacon.", dns.TypeA, 1},
		{"BEACON.", dns.TypeSOA, 1},
		{"NoPe.Service.Beacon.", dns.TypeA, 0},
	} {
		r := query(t, s.Addr(), c.name, c.qtype)
		if len(r.Question) != 1 || r.Question[0].Name != c.name {
			t.Fatalf("question %v, asked %s", r.Question, c.name)
		}
		if len(r.Answer) != c.n {
			t.Fatalf("%s: %v", c.name, r)
		}
		for _, rr := range r.Answer {
			if rr.Header().Name != c.name {
				t.Fatalf("%s: answer owner %s", c.name, rr.Header().Name)
			}
		}
	}
}

func TestCatalogChangeVisible(t *testing.T) {
	cat := newMemCatalog()
	s := start(t, cat, nil)
	a := s.Addr()
	wantNegative(t, "before", query(t, a, "api.service.beacon.", dns.TypeA), dns.RcodeNameError)
	cat.put(registry.Instance{ID: "api-1", Service: "api", Address: "10.9.0.1", Port: 1})
	wantAddrs(t, "registered", query(t, a, "api.service.beacon.", dns.TypeA), "10.9.0.1")
	cat.put(registry.Instance{ID: "api-2", Service: "api", Address: "10.9.0.2", Port: 1})
	wantAddrs(t, "second", query(t, a, "api.service.beacon.", dns.TypeA), "10.9.0.1", "10.9.0.2")
	cat.put(registry.Instance{ID: "api-1", Service: "api", Address: "10.9.0.1", Port: 1, Status: registry.StatusCritical})
	wantAddrs(t, "failing", query(t, a, "api.service.beacon.", dns.TypeA), "10.9.0.2")
	cat.put(registry.Instance{ID: "api-1", Service: "api", Address: "10.9.0.1", Port: 1})
	wantAddrs(t, "recovered", query(t, a, "api.service.beacon.", dns.TypeA), "10.9.0.1", "10.9.0.2")
	cat.remove("api", "api-1")
	cat.remove("api", "api-2")
	wantNegative(t, "gone", query(t, a, "api.service.beacon.", dns.TypeA), dns.RcodeNameError)
}

func TestTXTMeta(t *testing.T) {
	s := start(t, fuzzCatalog(), nil)
	r := query(t, s.Addr(), "odd-2.odd.service.beacon.", dns.TypeTXT, overTCP)
	if len(r.Answer) != 1 {
		t.Fatalf("TXT: %v", r)
	}
	// As miekg/dns presents them: the backslash, the quotes and the bytes
	// came through as they were; the 300-byte pair is left out.
	want := []string{`=empty key`, `back\\slash=\"q\"`, `bin=\000\255\\`}
	if got := r.Answer[0].(*dns.TXT).Txt; !slices.Equal(got, want) {
		t.Fatalf("TXT %q, want %q", got, want)
	}
	// The instance with no address is left out of every answer; the one
	// with an IPv4-mapped address answers A; a weight below 1 counts as 1.
	wantAddrs(t, "odd", query(t, s.Addr(), "odd.service.beacon.", dns.TypeA), "10.4.0.2")
	if r := query(t, s.Addr(), "odd.service.beacon.", dns.TypeSRV); len(r.Answer) != 1 || r.Answer[0].(*dns.SRV).Weight != 1 || r.Answer[0].(*dns.SRV).Priority != 65535 {
		t.Fatalf("odd SRV: %v", r)
	}
}

// TestWeightedShuffleLarge covers groups far larger than an answer,
// where only the records that fit are drawn.
func TestWeightedShuffleLarge(t *testing.T) {
	cat := newMemCatalog()
	for i := range 200 {
		cat.put(registry.Instance{ID: fmt.Sprintf("u-%03d", i), Service: "uniform", Address: fmt.Sprintf("10.5.0.%d", i+1), Port: 1})
		w := 1
		if i == 7 {
			w = 1000
		}
		cat.put(registry.Instance{ID: fmt.Sprintf("s-%03d", i), Service: "skewed", Address: fmt.Sprintf("10.6.0.%d", i+1), Port: 1, Weight: w})
	}
	s := start(t, cat, nil)
	const n = 200
	firstU, firstS := map[string]int{}, map[string]int{}
	for range n {
		for svc, first := range map[string]map[string]int{"uniform": firstU, "skewed": firstS} {
			r := query(t, s.Addr(), svc+".service.beacon.", dns.TypeA)
			got := addrs(r.Answer)
			if len(got) < 20 || len(slices.Compact(got)) != len(got) {
				t.Fatalf("%s: %d records, or duplicates: %v", svc, len(got), got)
			}
			first[r.Answer[0].(*dns.A).A.String()]++
		}
	}
	// Uniform: about 126 different instances come first in 200 draws (sd
	// about 6); skewed: the heavy one comes first with probability 0.83,
	// about 166 times (sd about 5).
	if len(firstU) < 80 {
		t.Fatalf("uniform: only %d different instances came first", len(firstU))
	}
	if heavy := firstS["10.6.0.8"]; heavy < 120 || heavy == n {
		t.Fatalf("skewed: the heavy instance came first %d times of %d", heavy, n)
	}
}

// TestAddressesOncePerFamily: an address shared by many instances is
// answered once, and a family in the minority is not crowded out.
func TestAddressesOncePerFamily(t *testing.T) {
	cat := newMemCatalog()
	for i := range 50 {
		cat.put(registry.Instance{ID: fmt.Sprintf("a-%02d", i), Service: "shared", Address: "10.7.0.1", Port: 1000 + i})
		cat.put(registry.Instance{ID: fmt.Sprintf("v6-%02d", i), Service: "shared", Address: fmt.Sprintf("fd00::7:%x", i+1), Port: 1})
	}
	cat.put(registry.Instance{ID: "b", Service: "shared", Address: "10.7.0.2", Port: 1})
	s := start(t, cat, nil)
	wantAddrs(t, "A", query(t, s.Addr(), "shared.service.beacon.", dns.TypeA), "10.7.0.1", "10.7.0.2")
	if r := query(t, s.Addr(), "shared.service.beacon.", dns.TypeAAAA, overTCP); len(addrs(r.Answer)) != 50 || len(slices.Compact(addrs(r.Answer))) != 50 {
		t.Fatalf("AAAA: %d", len(r.Answer))
	}
	if r := query(t, s.Addr(), "shared.service.beacon.", dns.TypeSRV, overTCP); len(r.Answer) != 101 {
		t.Fatalf("SRV: %d", len(r.Answer))
	}
}
