package dnsserver

import (
	"math/rand/v2"
	"net/netip"
	"slices"
	"sort"
	"strings"

	"github.com/beaconhq/beacon/registry"
	"github.com/miekg/dns"
)

// resolve fills the answer of a query for a name of the zone, for a
// response of at most limit bytes, drawing with rng (nil: the global
// source).
func (h *handler) resolve(resp *dns.Msg, q dns.Question, t target, limit int, rng *rand.Rand) {
	owner := q.Name // answers echo the question's spelling
	switch t.kind {
	case kindApex:
		switch q.Qtype {
		case dns.TypeSOA:
			resp.Answer = append(resp.Answer, h.soa(owner))
		case dns.TypeNS:
			resp.Answer = append(resp.Answer, &dns.NS{Hdr: h.hdr(owner, dns.TypeNS), Ns: h.nsName})
			if rr := h.addrRR(h.nsName, h.nsAddr); rr != nil {
				resp.Extra = append(resp.Extra, rr)
			}
		case dns.TypeANY:
			resp.Answer = append(resp.Answer, h.hinfo(owner))
		}
	case kindNS:
		h.addrAnswer(resp, q, owner, h.nsAddr)
	case kindNode:
		n, ok := h.cat.Node(t.node)
		if !ok {
			h.nxdomain(resp)
			return
		}
		addr, _ := netip.ParseAddr(n.Address)
		h.addrAnswer(resp, q, owner, addr)
	case kindService, kindTagOrID:
		list := h.cat.Service(t.service)
		if len(list) == 0 {
			h.nxdomain(resp)
			return
		}
		tag := t.tag
		if t.kind == kindTagOrID {
			if in := findID(list, t.label); in != nil {
				h.instance(resp, q, owner, in)
				break
			}
			tag = t.label
		}
		p := h.pool(t.service, tag, poolKindOf(q.Qtype), list)
		if !p.tagged {
			h.nxdomain(resp)
			return
		}
		h.service(resp, q, owner, t.service, p, limit, rng)
	case kindEmpty:
	default:
		h.nxdomain(resp)
		return
	}
	if len(resp.Answer) == 0 {
		h.nodata(resp)
	}
}

// service answers for the healthy instances of a service (and tag),
// building no more records than could fit in limit bytes.
func (h *handler) service(resp *dns.Msg, q dns.Question, owner, service string, p *pool, limit int, rng *rand.Rand) {
	switch q.Qtype {
	case dns.TypeANY:
		resp.Answer = append(resp.Answer, h.hinfo(owner))
		return
	case dns.TypeA, dns.TypeAAAA, dns.TypeSRV, dns.TypeTXT:
	default:
		return
	}
	picked := p.draw(limit/h.leastRecord(q.Qtype, service)+1, nil, &drawScratch{rng: rng})
	resp.Answer = make([]dns.RR, 0, len(picked))
	switch q.Qtype {
	case dns.TypeSRV:
		resp.Extra = make([]dns.RR, 0, len(picked)+1) // glue, and OPT
		for _, c := range picked {
			if c.in.Port < 1 || c.in.Port > 65535 {
				continue
			}
			name := c.in.ID + "." + service + ".service." + h.zone
			resp.Answer = append(resp.Answer, &dns.SRV{
				Hdr:      h.hdr(owner, dns.TypeSRV),
				Priority: uint16(min(max(c.in.Priority, 0), 65535)),
				Weight:   uint16(min(max1(c.in.Weight), 65535)),
				Port:     uint16(c.in.Port), Target: name,
			})
			// Glue: every target resolves, and its address travels along.
			resp.Extra = append(resp.Extra, h.addrRR(name, c.addr))
		}
	case dns.TypeA, dns.TypeAAAA: // distinct addresses of the family, by the pool
		for _, c := range picked {
			resp.Answer = append(resp.Answer, h.addrRR(owner, c.addr))
		}
	case dns.TypeTXT:
		var seen []string
		for _, c := range picked {
			txt := metaTXT(c.in.Meta)
			if len(txt) == 0 {
				continue
			}
			key := strings.Join(txt, "\x00")
			if slices.Contains(seen, key) {
				continue
			}
			seen = append(seen, key)
			resp.Answer = append(resp.Answer, &dns.TXT{Hdr: h.hdr(owner, dns.TypeTXT), Txt: txt})
		}
	}
}

// leastRecord is the least a record of a service's answer of type qtype
// (A, AAAA, SRV or TXT) takes, its owner compressed to 2 bytes: a bound
// on how many can fit a message, and so on how many to draw.
func (h *handler) leastRecord(qtype uint16, service string) int {
	switch qtype {
	case dns.TypeA:
		return 2 + 10 + 4
	case dns.TypeAAAA:
		return 2 + 10 + 16
	case dns.TypeSRV: // the target is never compressed (RFC 2782)
		return 2 + 10 + 6 + 2 + len(service) + len(".service.") + len(h.zone) + 1
	}
	return 2 + 10 + 1 // TXT
}

// instance answers for <instance-id>.<service>.service: the SRV target.
func (h *handler) instance(resp *dns.Msg, q dns.Question, owner string, in *registry.Instance) {
	if !in.Healthy(h.warn) {
		return // known, but not answered: NODATA
	}
	switch q.Qtype {
	case dns.TypeTXT:
		if txt := metaTXT(in.Meta); len(txt) > 0 {
			resp.Answer = append(resp.Answer, &dns.TXT{Hdr: h.hdr(owner, dns.TypeTXT), Txt: txt})
		}
	default:
		addr, _ := netip.ParseAddr(in.Address)
		h.addrAnswer(resp, q, owner, addr)
	}
}

// addrAnswer answers A, AAAA or ANY for a name that owns one address.
func (h *handler) addrAnswer(resp *dns.Msg, q dns.Question, owner string, addr netip.Addr) {
	switch q.Qtype {
	case dns.TypeANY:
		resp.Answer = append(resp.Answer, h.hinfo(owner))
	case dns.TypeA, dns.TypeAAAA:
		addr = addr.Unmap()
		if addr.IsValid() && addr.Is4() == (q.Qtype == dns.TypeA) {
			resp.Answer = append(resp.Answer, h.addrRR(owner, addr))
		}
	}
}

func max1(w int) int {
	if w < 1 {
		return 1
	}
	return w
}

// findID finds an instance by id in a list sorted by id.
func findID(list []*registry.Instance, id string) *registry.Instance {
	i := sort.Search(len(list), func(i int) bool { return list[i].ID >= id })
	if i < len(list) && list[i].ID == id {
		return list[i]
	}
	return nil
}

func hasTag(in *registry.Instance, tag string) bool {
	for _, t := range in.Tags {
		if t == tag || strings.EqualFold(t, tag) {
			return true
		}
	}
	return false
}

// TXT strings: one "key=value" per meta entry, keys sorted. A string holds
// at most 255 bytes, so a longer pair is left out; a record stops short of
// maxTXT bytes so that it always fits a message.
const maxTXT = 60000

func metaTXT(meta map[string]string) []string {
	if len(meta) == 0 {
		return nil
	}
	keys := make([]string, 0, len(meta))
	for k := range meta {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	txt := make([]string, 0, len(keys))
	size := 0
	for _, k := range keys {
		v := meta[k]
		n := len(k) + 1 + len(v)
		if n > 255 {
			continue
		}
		if size += n + 1; size > maxTXT {
			break
		}
		// miekg/dns reads TXT strings in presentation form, where a
		// backslash escapes: double it so that it stays a backslash.
		s := k + "=" + v
		if strings.IndexByte(s, '\\') >= 0 {
			s = strings.ReplaceAll(s, `\`, `\\`)
		}
		txt = append(txt, s)
	}
	return txt
}

func (h *handler) hdr(name string, rrtype uint16) dns.RR_Header {
	return dns.RR_Header{Name: name, Rrtype: rrtype, Class: dns.ClassINET, Ttl: h.ttl}
}

// addrRR is the A or AAAA record of addr; nil for no address.
func (h *handler) addrRR(name string, addr netip.Addr) dns.RR {
	switch {
	case !addr.IsValid():
		return nil
	case addr.Is4() || addr.Is4In6():
		b := addr.Unmap().As4()
		return &dns.A{Hdr: h.hdr(name, dns.TypeA), A: b[:]}
	default:
		b := addr.As16()
		return &dns.AAAA{Hdr: h.hdr(name, dns.TypeAAAA), AAAA: b[:]}
	}
}

func (h *handler) soa(owner string) *dns.SOA {
	return &dns.SOA{
		Hdr: h.hdr(owner, dns.TypeSOA), Ns: h.nsName, Mbox: "hostmaster." + h.zone,
		Serial: h.serial, Refresh: 3600, Retry: 600, Expire: 86400,
		Minttl: h.ttl, // negative answers are cached as briefly as positive ones
	}
}

// hinfo is the answer to ANY (RFC 8482 section 4.2).
func (h *handler) hinfo(owner string) *dns.HINFO {
	return &dns.HINFO{Hdr: h.hdr(owner, dns.TypeHINFO), Cpu: "RFC8482", Os: ""}
}

func (h *handler) nxdomain(resp *dns.Msg) {
	resp.Rcode = dns.RcodeNameError
	resp.Answer, resp.Extra = nil, nil
	resp.Ns = append(resp.Ns[:0], h.soa(h.zone))
}

func (h *handler) nodata(resp *dns.Msg) {
	resp.Rcode = dns.RcodeSuccess
	resp.Answer, resp.Extra = nil, nil
	resp.Ns = append(resp.Ns[:0], h.soa(h.zone))
}
