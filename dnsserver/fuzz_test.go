package dnsserver

import (
	"encoding/binary"
	"fmt"
	"net/netip"
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

	s, err := New(Config{Recursors: []string{"127.0.0.1:1"}}, fuzzCatalog())
	if err != nil {
		f.Fatal(err)
	}
	h := s.h
	relayed := relayRequests(f)
	f.Fuzz(func(t *testing.T, pkt []byte) {
		for _, tcp := range []bool{false, true} {
			out, fwd, _ := h.answer(pkt, tcp, make([]byte, 512))
			if fwd != nil {
				if out != nil || fwd.req == nil || len(fwd.req.Question) != 1 {
					t.Fatalf("forward %v with reply %d bytes", fwd.req, len(out))
				}
				// Refused outside the networks allowed, SERVFAIL when it
				// carries this server's mark: well-formed either way.
				for _, client := range []netip.Addr{netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("127.0.0.1")} {
					if instead, ok := s.admitForward(fwd, client); !ok {
						if err := checkReply(pkt, instead, tcp); err != nil {
							t.Fatalf("not forwarded, from %v, tcp %v: %v\nquery % x", client, tcp, err, pkt)
						}
					}
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
		// The packet as a recursor's answer, relayed to a client: a
		// well-formed response within the client's size, without the
		// loop mark.
		upstream := new(dns.Msg)
		if upstream.Unpack(pkt) != nil {
			return
		}
		for _, r := range relayed {
			out := h.relay(r.fwd, upstream.Copy())
			if err := checkReply(r.pkt, out, r.fwd.tcp); err != nil {
				t.Fatalf("relayed, tcp %v: %v\nanswer % x", r.fwd.tcp, err, pkt)
			}
			m := new(dns.Msg)
			_ = m.Unpack(out)
			if o := m.IsEdns0(); o != nil && r.fwd.req.IsEdns0() == nil {
				t.Fatalf("relayed an OPT to a client that sent none\nanswer % x", pkt)
			} else if o != nil {
				for _, e := range o.Option {
					if e.Option() == loopOption {
						t.Fatalf("relayed the loop mark\nanswer % x", pkt)
					}
				}
			}
		}
	})
}

// relayRequest is a forwarded query and its packet.
type relayRequest struct {
	fwd *forwardReq
	pkt []byte
}

// relayRequests are the queries FuzzHandler relays answers to: without
// EDNS0 over UDP, with it, and over TCP.
func relayRequests(f *testing.F) []relayRequest {
	var out []relayRequest
	for _, c := range []struct {
		edns  bool
		tcp   bool
		limit int
	}{{false, false, dns.MinMsgSize}, {true, false, advertisedUDPSize}, {false, true, maxTCPSize}} {
		m := new(dns.Msg)
		m.SetQuestion("example.com.", dns.TypeA)
		if c.edns {
			m.SetEdns0(4096, true)
		}
		pkt, err := m.Pack()
		if err != nil {
			f.Fatal(err)
		}
		out = append(out, relayRequest{fwd: &forwardReq{req: m, tcp: c.tcp, limit: c.limit}, pkt: pkt})
	}
	return out
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
