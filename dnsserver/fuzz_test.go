package dnsserver

import (
	"encoding/binary"
	"fmt"
	"strings"
	"testing"

	"github.com/beaconhq/beacon/registry"
	"github.com/miekg/dns"
)

// fuzzCatalog adds odd data to the fixture: an address that is no
// address, meta with backslashes, quotes, bytes that are not UTF-8 and a
// pair over 255 bytes, a zero weight, and a service too big for UDP.
func fuzzCatalog() *memCatalog {
	c := bigCatalog(80, 5)
	c.put(registry.Instance{ID: "odd-1", Service: "odd", Address: "not-an-ip", Port: 1})
	c.put(registry.Instance{ID: "odd-2", Service: "odd", Address: "::ffff:10.4.0.2", Port: 65535, Weight: -3, Priority: 65535,
		Meta: map[string]string{`back\slash`: `"q"`, "bin": "\x00\xff\\", "long": strings.Repeat("v", 300), "": "empty key"}})
	return c
}

// FuzzHandler feeds arbitrary bytes to the packet path, over UDP and TCP:
// never a panic, and every reply is a well-formed response to the query,
// within the size its transport allows.
func FuzzHandler(f *testing.F) {
	for _, q := range []struct {
		name  string
		qtype uint16
	}{
		{"web.service.beacon.", dns.TypeA}, {"web.service.beacon.", dns.TypeSRV}, {"big.service.beacon.", dns.TypeSRV},
		{"mid.service.beacon.", dns.TypeSRV}, {"odd.service.beacon.", dns.TypeTXT}, {"odd-2.odd.service.beacon.", dns.TypeA},
		{"_web._tcp.service.beacon.", dns.TypeSRV}, {"primary.web.service.beacon.", dns.TypeAAAA},
		{"n1.node.beacon.", dns.TypeANY}, {"beacon.", dns.TypeNS}, {"beacon.", dns.TypeAXFR}, {"example.com.", dns.TypeA},
		{"NoPe.Service.Beacon.", dns.TypeMX}, {`a\.b.beacon.`, dns.TypeA},
	} {
		m := new(dns.Msg)
		m.SetQuestion(q.name, q.qtype)
		b, _ := m.Pack()
		f.Add(b)
		m.SetEdns0(600, true)
		b, _ = m.Pack()
		f.Add(b)
	}
	m := new(dns.Msg)
	m.SetQuestion("web.service.beacon.", dns.TypeA)
	m.SetEdns0(1232, false)
	m.IsEdns0().SetVersion(3)
	b, _ := m.Pack()
	f.Add(b)
	m.Opcode = dns.OpcodeUpdate
	b, _ = m.Pack()
	f.Add(b)
	f.Add([]byte{})
	f.Add([]byte{0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Add([]byte{0, 1, 1, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0xc0, 0x0c})
	f.Add([]byte{0, 1, 0x80, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1})

	s, err := New(Config{Recursors: []string{"127.0.0.1:1"}}, fuzzCatalog(), nil)
	if err != nil {
		f.Fatal(err)
	}
	h := s.h
	f.Fuzz(func(t *testing.T, pkt []byte) {
		for _, tcp := range []bool{false, true} {
			out, fwd := h.answer(pkt, tcp, make([]byte, 512))
			if fwd != nil {
				if out != nil || fwd.req == nil || len(fwd.req.Question) != 1 {
					t.Fatalf("forward %v with reply %d bytes", fwd.req, len(out))
				}
				continue
			}
			if out == nil {
				continue
			}
			if err := checkReply(pkt, out, tcp); err != nil {
				t.Fatalf("tcp %v: %v\nquery % x", tcp, err, pkt)
			}
		}
	})
}

func checkReply(pkt, out []byte, tcp bool) error {
	r := new(dns.Msg)
	if err := r.Unpack(out); err != nil {
		return fmt.Errorf("reply does not unpack: %v", err)
	}
	if !r.Response || r.Id != binary.BigEndian.Uint16(pkt) {
		return fmt.Errorf("reply QR %v id %d", r.Response, r.Id)
	}
	limit := maxTCPSize
	if !tcp {
		limit = advertisedUDPSize
		q := new(dns.Msg)
		if q.Unpack(pkt) == nil && q.IsEdns0() == nil {
			limit = dns.MinMsgSize
		}
	}
	if len(out) > limit {
		return fmt.Errorf("reply of %d bytes over the limit of %d", len(out), limit)
	}
	return nil
}
