package dnsserver

import (
	"encoding/binary"
	"math/rand/v2"
	"sync"

	"github.com/miekg/dns"
)

// The fast path answers the queries that make up nearly all of a zone's
// traffic, A, AAAA and SRV for a service (or tag) over UDP, without a
// dns.Msg: it reads the question off the wire, draws from the service's
// pool and copies records the pool encoded beforehand. It allocates
// nothing. That matters more than the microseconds: with a catalog of
// 100k instances every garbage collection marks a large heap, and its
// cycles, driven by what each answer allocated, made the tail of the
// latencies four times longer.
//
// Whatever it is not sure of (another type, TCP, EDNS0 options, a name
// that needs escaping, NXDOMAIN or NODATA, anything odd) goes the general
// way, answer's, whose response it reproduces byte for byte apart from
// the random order; TestFastPathAgrees holds it to that.

// fastScratch is one query's reusable memory.
type fastScratch struct {
	name  []byte // the question's name, lower-cased, in text form
	picks []*member
	draw  drawScratch
}

var fastScratchPool = sync.Pool{New: func() any { return &fastScratch{name: make([]byte, 0, 256)} }}

// fastQuery is what the fast path reads of a query packet.
type fastQuery struct {
	qend   int // the question ends at pkt[qend]
	qtype  uint16
	limit  int // the most the response may take
	hasOpt bool
	do     bool
}

// fastAnswer answers pkt, a query over UDP, into buf when it can; ok is
// false when the query must go the general way. rng is the source of the
// draw's randomness (nil: the global one); a test gives the general way the
// same.
func (h *handler) fastAnswer(pkt, buf []byte, rng *rand.Rand) (out []byte, ok bool) {
	sc := fastScratchPool.Get().(*fastScratch)
	defer func() {
		clear(sc.picks) // hold on to no pool once the catalog moves on
		if cap(sc.draw.keyed) > 4096 {
			sc.draw.keyed = nil // left by a draw over a huge group
		}
		fastScratchPool.Put(sc)
	}()
	q, ok := readFastQuery(pkt, sc)
	if !ok {
		return nil, false
	}
	t, inZone := h.names.lookup(h, sc.name)
	if !inZone || t.kind != kindService && t.kind != kindTagOrID {
		return nil, false
	}
	list := h.cat.Service(t.service)
	if len(list) == 0 {
		return nil, false // NXDOMAIN
	}
	tag := t.tag
	if t.kind == kindTagOrID {
		if findID(list, t.label) != nil {
			return nil, false // an instance's name
		}
		tag = t.label
	}
	p := h.pool(t.service, tag, poolKindOf(q.qtype), list)
	if !p.tagged {
		return nil, false // NXDOMAIN
	}
	sc.draw.rng = rng
	sc.picks = p.draw(q.limit/h.leastRecord(q.qtype, t.service)+1, sc.picks[:0], &sc.draw)
	picks := sc.picks[:0]
	for _, m := range sc.picks {
		if q.qtype == dns.TypeSRV {
			if m.in.Port < 1 || m.in.Port > 65535 {
				continue // left out, as the general way does
			}
			if m.tLen == 0 {
				return nil, false // its target is left to the general way (see appendTarget)
			}
		}
		picks = append(picks, m)
	}
	if len(picks) == 0 {
		return nil, false // NODATA
	}
	return h.writeFast(pkt, buf, q, p, picks), true
}

// readFastQuery reads a query of the one shape the fast path takes: one
// question of type A, AAAA or SRV, class IN or ANY, its name in plain
// labels of letters, digits, '-' and '_', and at most an OPT record of
// version 0 without options. sc.name gets the name, lower-cased.
func readFastQuery(pkt []byte, sc *fastScratch) (q fastQuery, ok bool) {
	if len(pkt) < 12 || pkt[2]&0xF8 != 0 || // a response, or not a QUERY
		binary.BigEndian.Uint16(pkt[4:]) != 1 || binary.BigEndian.Uint16(pkt[6:]) != 0 ||
		binary.BigEndian.Uint16(pkt[8:]) != 0 || binary.BigEndian.Uint16(pkt[10:]) > 1 {
		return q, false
	}
	name := sc.name[:0]
	off := 12
	for {
		if off >= len(pkt) {
			return q, false
		}
		l := int(pkt[off])
		off++
		if l == 0 {
			break
		}
		// A compression pointer, a name cut short, or one over 255
		// bytes with the root label still to come.
		if l > 63 || off+l > len(pkt) || off+l+1-12 > 255 {
			return q, false
		}
		for _, c := range pkt[off : off+l] {
			switch {
			case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '-', c == '_':
			case c >= 'A' && c <= 'Z':
				c += 'a' - 'A'
			default:
				return q, false
			}
			name = append(name, c)
		}
		name = append(name, '.')
		off += l
	}
	sc.name = name
	if len(name) == 0 || off+4 > len(pkt) {
		return q, false
	}
	q.qtype = binary.BigEndian.Uint16(pkt[off:])
	if class := binary.BigEndian.Uint16(pkt[off+2:]); class != dns.ClassINET && class != dns.ClassANY {
		return q, false
	}
	switch q.qtype {
	case dns.TypeA, dns.TypeAAAA, dns.TypeSRV:
	default:
		return q, false
	}
	q.qend = off + 4
	q.limit = dns.MinMsgSize
	opt := pkt[q.qend:]
	if binary.BigEndian.Uint16(pkt[10:]) == 0 {
		return q, len(opt) == 0
	}
	// name ".", type OPT, size, extended rcode, version, flags, no data
	if len(opt) != 11 || opt[0] != 0 || binary.BigEndian.Uint16(opt[1:]) != dns.TypeOPT ||
		opt[6] != 0 || binary.BigEndian.Uint16(opt[9:]) != 0 {
		return q, false
	}
	q.hasOpt, q.do = true, opt[7]&0x80 != 0
	q.limit = min(max(int(binary.BigEndian.Uint16(opt[3:])), dns.MinMsgSize), advertisedUDPSize)
	return q, true
}

// writeFast writes the response: the question as asked, then as many of
// picks, and of their glue for SRV, as the RFC 2181 rules of fit let in.
func (h *handler) writeFast(pkt, buf []byte, q fastQuery, p *pool, picks []*member) []byte {
	const rrHeader = 2 + 10 // a compressed owner, type, class, TTL, length
	answerSize := func(m *member) int {
		switch {
		case q.qtype == dns.TypeSRV:
			return rrHeader + 6 + int(m.tLen)
		case m.addr.Is4():
			return rrHeader + 4
		}
		return rrHeader + 16
	}
	glueSize := func(m *member) int {
		if m.addr.Is4() {
			return rrHeader + 4
		}
		return rrHeader + 16
	}
	optSize := 0
	if q.hasOpt {
		optSize = 11
	}
	size := q.qend + optSize
	answers, glue := len(picks), 0
	for _, m := range picks {
		size += answerSize(m)
	}
	truncated := size > q.limit
	switch {
	case truncated: // the answer itself does not fit: whole records, TC, no glue
		for answers > 0 && size > q.limit {
			answers--
			size -= answerSize(picks[answers])
		}
	case q.qtype == dns.TypeSRV: // glue, as much as fits
		for glue < min(len(picks), maxFastGlue) && size+glueSize(picks[glue]) <= q.limit {
			size += glueSize(picks[glue])
			glue++
		}
	}

	out := buf[:0]
	if cap(out) < size {
		out = make([]byte, 0, size)
	}
	out = append(out, pkt[0], pkt[1])
	flags := uint16(0x8400) | uint16(pkt[2]&0x01)<<8 | uint16(pkt[3]&0x10) // QR, AA, RD and CD copied
	if truncated {
		flags |= 0x0200
	}
	if h.recurse {
		flags |= 0x0080
	}
	extra := glue
	if q.hasOpt {
		extra++
	}
	out = binary.BigEndian.AppendUint16(out, flags)
	out = binary.BigEndian.AppendUint16(out, 1)
	out = binary.BigEndian.AppendUint16(out, uint16(answers))
	out = binary.BigEndian.AppendUint16(out, 0)
	out = binary.BigEndian.AppendUint16(out, uint16(extra))
	out = append(out, pkt[12:q.qend]...) // the question, letter case and all

	var targetAt [maxFastGlue]uint16 // where each SRV target starts, for its glue's owner
	for i, m := range picks[:answers] {
		if q.qtype == dns.TypeSRV {
			target := p.target(m)
			out = h.appendRRHeader(out, 0xC00C, dns.TypeSRV, 6+len(target))
			out = binary.BigEndian.AppendUint16(out, uint16(min(max(m.in.Priority, 0), 65535)))
			out = binary.BigEndian.AppendUint16(out, uint16(min(max1(m.in.Weight), 65535)))
			out = binary.BigEndian.AppendUint16(out, uint16(m.in.Port))
			if i < maxFastGlue {
				targetAt[i] = uint16(len(out))
			}
			out = append(out, target...) // never compressed (RFC 2782)
			continue
		}
		out = h.appendAddr(out, 0xC00C, m)
	}
	for i, m := range picks[:glue] {
		out = h.appendAddr(out, 0xC000|targetAt[i], m)
	}
	if q.hasOpt {
		out = append(out, 0, byte(dns.TypeOPT>>8), byte(dns.TypeOPT), byte(advertisedUDPSize>>8), byte(advertisedUDPSize&0xFF), 0, 0)
		if q.do {
			out = append(out, 0x80, 0)
		} else {
			out = append(out, 0, 0)
		}
		out = append(out, 0, 0)
	}
	return out
}

// maxFastGlue bounds the glue of one response: a UDP response of 1232
// bytes holds fewer SRV records than this, so the bound never bites.
const maxFastGlue = advertisedUDPSize/(2+10+6+2) + 1

func (h *handler) appendRRHeader(out []byte, owner uint16, rrtype uint16, rdlen int) []byte {
	out = binary.BigEndian.AppendUint16(out, owner)
	out = binary.BigEndian.AppendUint16(out, rrtype)
	out = binary.BigEndian.AppendUint16(out, dns.ClassINET)
	out = binary.BigEndian.AppendUint32(out, h.ttl)
	return binary.BigEndian.AppendUint16(out, uint16(rdlen))
}

// appendAddr appends the A or AAAA record of m's address under the
// owner the compression pointer names.
func (h *handler) appendAddr(out []byte, owner uint16, m *member) []byte {
	if m.addr.Is4() {
		a := m.addr.As4()
		return append(h.appendRRHeader(out, owner, dns.TypeA, 4), a[:]...)
	}
	a := m.addr.As16()
	return append(h.appendRRHeader(out, owner, dns.TypeAAAA, 16), a[:]...)
}

// nameCache remembers what the names of services and tags asked stand
// for, so that the fast path does not make a string of each. Other names
// are not kept: they go the general way, which makes strings anyway, and
// a flood of them must not take the write lock on every query. Service
// names made up by the thousand start it over, as the pool cache does.
type nameCache struct {
	mu sync.RWMutex
	m  map[string]nameVerdict
}

type nameVerdict struct {
	t      target
	inZone bool
}

const maxNames = 4096

// lookup parses name (lower-cased, fully qualified) the first time and
// remembers it.
func (c *nameCache) lookup(h *handler, name []byte) (target, bool) {
	c.mu.RLock()
	v, ok := c.m[string(name)] // no string is made for a lookup
	c.mu.RUnlock()
	if ok {
		return v.t, v.inZone
	}
	s := string(name)
	v.t, v.inZone = h.parse(s)
	if !v.inZone || v.t.kind != kindService && v.t.kind != kindTagOrID {
		return v.t, v.inZone
	}
	c.mu.Lock()
	if len(c.m) >= maxNames || c.m == nil {
		c.m = make(map[string]nameVerdict)
	}
	c.m[s] = v
	c.mu.Unlock()
	return v.t, v.inZone
}
