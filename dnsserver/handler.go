package dnsserver

import (
	"encoding/binary"
	"math/rand/v2"
	"net/netip"
	"strings"
	"sync"

	"github.com/miekg/dns"
)

const (
	// advertisedUDPSize is the EDNS0 payload size the server advertises
	// and the most it sends over UDP, whatever a client offers (DNS flag
	// day 2020: no IP fragmentation).
	advertisedUDPSize = 1232
	// maxTCPSize is the most a DNS message over TCP can hold.
	maxTCPSize = dns.MaxMsgSize
)

// handler answers packets for one zone from the catalog. It holds no
// per-query state: any number of goroutines call answer at once.
type handler struct {
	zone    string // "beacon."
	dotZone string // ".beacon."
	ttl     uint32
	warn    bool // answer warning instances too
	cat     Catalog
	nsName  string     // "ns.beacon."
	nsAddr  netip.Addr // what ns.<zone> resolves to
	serial  uint32
	recurse bool // recursors are configured: RA, and forwarding
	pools   poolCache
	builds  sync.WaitGroup // pools being built in the background
	names   nameCache
}

// forwardReq is a query for a name outside the zone, to be forwarded.
type forwardReq struct {
	req   *dns.Msg
	tcp   bool
	limit int // the most the client takes
}

// answer handles one query packet as it came off the wire. It returns the
// packed response (in buf when buf is large enough) and its rcode, or a
// query to forward, or neither when the packet deserves no answer (shorter
// than a header, or a response: answering those would let anyone build a
// loop).
func (h *handler) answer(pkt []byte, tcp bool, buf []byte) ([]byte, *forwardReq, int) {
	if !tcp {
		if out, ok := h.fastAnswer(pkt, buf, nil); ok {
			return out, nil, dns.RcodeSuccess // the fast path answers only records
		}
	}
	return h.answerGeneral(pkt, tcp, buf, nil)
}

// answerGeneral answers as answer does, the general way: through a
// dns.Msg, for every query. rng is the source of a draw's randomness (nil:
// the global one); a test gives both ways the same.
func (h *handler) answerGeneral(pkt []byte, tcp bool, buf []byte, rng *rand.Rand) ([]byte, *forwardReq, int) {
	if len(pkt) < 12 || pkt[2]&0x80 != 0 {
		return nil, nil, 0
	}
	limit := dns.MinMsgSize
	if tcp {
		limit = maxTCPSize
	}
	resp := &dns.Msg{MsgHdr: dns.MsgHdr{
		Id:                 binary.BigEndian.Uint16(pkt),
		Response:           true,
		Opcode:             int(pkt[2]>>3) & 0xF,
		RecursionDesired:   pkt[2]&0x01 != 0,
		RecursionAvailable: h.recurse,
		CheckingDisabled:   pkt[3]&0x10 != 0,
	}}
	req := new(dns.Msg)
	err := req.Unpack(pkt)

	// The OPT record, when the request carries exactly one well-formed.
	var reqOpt *dns.OPT
	optCount := 0
	if err == nil {
		for _, rr := range req.Extra {
			if o, ok := rr.(*dns.OPT); ok {
				reqOpt = o
				optCount++
			}
		}
	}
	if optCount > 1 || reqOpt != nil && reqOpt.Hdr.Name != "." {
		err, reqOpt = errMalformed, nil
	}
	var respOpt *dns.OPT
	if reqOpt != nil {
		respOpt = newOpt(reqOpt.Do())
		if !tcp {
			limit = min(max(int(reqOpt.UDPSize()), dns.MinMsgSize), advertisedUDPSize)
		}
	}

	switch {
	case resp.Opcode != dns.OpcodeQuery:
		resp.Rcode = dns.RcodeNotImplemented
		if err == nil && len(req.Question) == 1 {
			resp.Question = req.Question
		}
		return h.reply(resp, respOpt, limit, buf)
	case err != nil || len(req.Question) != 1:
		resp.Rcode = dns.RcodeFormatError
		return h.reply(resp, respOpt, limit, buf)
	}
	resp.Question = req.Question // echoed as asked, letter case and all
	if reqOpt != nil && reqOpt.Version() != 0 {
		resp.Rcode = dns.RcodeBadVers
		return h.reply(resp, respOpt, limit, buf)
	}

	q := req.Question[0]
	t, inZone := h.parse(strings.ToLower(q.Name))
	if !inZone {
		if h.recurse && resp.RecursionDesired {
			return nil, &forwardReq{req: req, tcp: tcp, limit: limit}, 0
		}
		resp.Rcode = dns.RcodeRefused
		return h.reply(resp, respOpt, limit, buf)
	}
	switch {
	case q.Qclass != dns.ClassINET && q.Qclass != dns.ClassANY,
		q.Qtype == dns.TypeAXFR, q.Qtype == dns.TypeIXFR:
		// No other class lives here, and the zone is not for transfer.
		resp.Rcode = dns.RcodeRefused
		return h.reply(resp, respOpt, limit, buf)
	}
	resp.Authoritative = true
	h.resolve(resp, q, t, limit, rng)
	return h.reply(resp, respOpt, limit, buf)
}

// reply is answer's return of resp, packed by finish, with its rcode
// (finish may have made it SERVFAIL).
func (h *handler) reply(resp *dns.Msg, opt *dns.OPT, limit int, buf []byte) ([]byte, *forwardReq, int) {
	out := h.finish(resp, opt, limit, buf)
	return out, nil, resp.Rcode
}

// finish adds the OPT record and packs the response into at most limit
// bytes. A response that cannot be packed becomes SERVFAIL.
func (h *handler) finish(resp *dns.Msg, opt *dns.OPT, limit int, buf []byte) []byte {
	if opt != nil {
		resp.Extra = append(resp.Extra, opt)
	}
	out, err := fit(resp, limit, buf)
	if err == nil {
		return out
	}
	return h.servfail(resp, opt, buf)
}

// servfail turns resp into a bare SERVFAIL, keeping header and question.
func (h *handler) servfail(resp *dns.Msg, opt *dns.OPT, buf []byte) []byte {
	resp.Rcode = dns.RcodeServerFailure
	resp.Truncated = false
	resp.Answer, resp.Ns, resp.Extra = nil, nil, nil
	if opt != nil {
		resp.Extra = []dns.RR{opt}
	}
	out, err := resp.PackBuffer(buf)
	if err != nil {
		return nil
	}
	return out
}

// errorReply packs a response without records to req.
func (h *handler) errorReply(req *dns.Msg, rcode int, limit int) []byte {
	return h.errorReplyRA(req, rcode, limit, h.recurse)
}

// errorReplyRA is errorReply with RA as given: clear for a client that
// forwarding does not serve.
func (h *handler) errorReplyRA(req *dns.Msg, rcode int, limit int, ra bool) []byte {
	resp := &dns.Msg{MsgHdr: dns.MsgHdr{
		Id: req.Id, Response: true, Opcode: req.Opcode, RecursionDesired: req.RecursionDesired,
		RecursionAvailable: ra, CheckingDisabled: req.CheckingDisabled, Rcode: rcode,
	}, Question: req.Question}
	var opt *dns.OPT
	if o := req.IsEdns0(); o != nil {
		opt = newOpt(o.Do())
	}
	return h.finish(resp, opt, limit, nil)
}

// newOpt is the OPT record of every response to a request with one:
// version 0, the advertised size, and the DO bit copied (RFC 3225).
func newOpt(do bool) *dns.OPT {
	o := &dns.OPT{Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeOPT}}
	o.SetUDPSize(advertisedUDPSize)
	if do {
		o.SetDo()
	}
	return o
}
