package dnsserver

import (
	"bytes"
	"crypto/rand"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// forwardTimeout bounds one exchange with one recursor.
const forwardTimeout = 2 * time.Second

// loopOption is the EDNS0 option (from the range for local use, RFC
// 6891 §9) that marks a query this server forwards, with a random value
// of its own: a recursor that passes the query back unchanged is caught
// at once. A recursor that rebuilds the query loses the mark; the same
// question then finds its first copy still in flight and waits for it
// (flights below), so a loop costs a few datagrams, not one more per turn.
const loopOption = 65431

// forwarder relays questions outside the zone to the recursors, tried in
// the order configured until one answers. Identical questions in flight
// at once share one exchange.
type forwarder struct {
	upstreams []string
	udp, tcp  *dns.Client
	mark      []byte // this server's value of loopOption

	mu      sync.Mutex
	flights map[flightKey]*flight
}

// flightKey is what makes two queries ask the same of a recursor.
type flightKey struct {
	name          string // lower-cased
	qtype, qclass uint16
	tcp, edns, do bool
	cd            bool
}

// flight is one exchange with the recursors, and its outcome once done
// is closed (nil: none answered).
type flight struct {
	done chan struct{}
	resp *dns.Msg
}

func newForwarder(upstreams []string) *forwarder {
	mark := make([]byte, 8)
	_, _ = rand.Read(mark)
	return &forwarder{
		upstreams: upstreams,
		udp:       &dns.Client{Net: "udp", Timeout: forwardTimeout},
		tcp:       &dns.Client{Net: "tcp", Timeout: forwardTimeout},
		mark:      mark,
		flights:   map[flightKey]*flight{},
	}
}

// looped says whether req carries this server's mark: it is a query this
// server forwarded, come back.
func (fw *forwarder) looped(req *dns.Msg) bool {
	o := req.IsEdns0()
	if o == nil {
		return false
	}
	for _, e := range o.Option {
		if l, ok := e.(*dns.EDNS0_LOCAL); ok && l.Code == loopOption && bytes.Equal(l.Data, fw.mark) {
			return true
		}
	}
	return false
}

// exchange asks the recursors f's question, or waits for the exchange
// already asking it, and returns a copy of the answer (nil: none).
func (fw *forwarder) exchange(f *forwardReq) *dns.Msg {
	q := f.req.Question[0]
	o := f.req.IsEdns0()
	k := flightKey{
		name: strings.ToLower(q.Name), qtype: q.Qtype, qclass: q.Qclass, tcp: f.tcp,
		edns: o != nil, do: o != nil && o.Do(), cd: f.req.CheckingDisabled,
	}
	fw.mu.Lock()
	fl, joined := fw.flights[k]
	if !joined {
		fl = &flight{done: make(chan struct{})}
		fw.flights[k] = fl
	}
	fw.mu.Unlock()
	if !joined {
		fl.resp = fw.ask(f)
		fw.mu.Lock()
		delete(fw.flights, k)
		fw.mu.Unlock()
		close(fl.done)
	}
	<-fl.done
	if fl.resp == nil {
		return nil
	}
	return fl.resp.Copy()
}

// ask sends f's query, marked, to each recursor in turn until one answers.
func (fw *forwarder) ask(f *forwardReq) *dns.Msg {
	q := f.req.Copy()
	q.Id = dns.Id()
	o := q.IsEdns0()
	if o == nil {
		o = newOpt(false)
		q.Extra = append(q.Extra, o)
	}
	o.Option = append(o.Option, &dns.EDNS0_LOCAL{Code: loopOption, Data: fw.mark})
	c := fw.udp
	if f.tcp {
		c = fw.tcp
	}
	for _, up := range fw.upstreams {
		r, _, err := c.Exchange(q, up)
		if err == nil && r != nil {
			return r
		}
	}
	return nil
}

// forward answers f from the recursors; SERVFAIL when none answers. The
// client's question, flags and EDNS0 go upstream as they came (with the
// loop mark added), under a fresh id; the answer comes back under the
// client's id, over the client's transport, within the client's size,
// with an OPT only if the client sent one.
func (h *handler) forward(fw *forwarder, f *forwardReq) []byte {
	return h.relay(f, fw.exchange(f))
}

// relay turns a recursor's answer (nil: none) into the client's. What
// is not a response to a query (QR clear: FuzzHandler's first find) is
// no answer: passing it on would send a query to the client.
func (h *handler) relay(f *forwardReq, resp *dns.Msg) []byte {
	if resp == nil || !resp.Response || resp.Opcode != dns.OpcodeQuery {
		return h.errorReply(f.req, dns.RcodeServerFailure, f.limit)
	}
	resp.Id = f.req.Id
	resp.Question = f.req.Question // as the client spelled it
	resp.RecursionAvailable = true
	extra := resp.Extra[:0]
	for _, rr := range resp.Extra {
		if o, ok := rr.(*dns.OPT); ok {
			if f.req.IsEdns0() == nil {
				continue
			}
			o.SetUDPSize(advertisedUDPSize)
			opts := o.Option[:0]
			for _, e := range o.Option {
				if e.Option() != loopOption {
					opts = append(opts, e)
				}
			}
			o.Option = opts
		}
		extra = append(extra, rr)
	}
	resp.Extra = extra
	out, err := fit(resp, f.limit, nil)
	if err != nil || new(dns.Msg).Unpack(out) != nil {
		// Packed again, a record the recursor sent may not parse: an
		// SOA with no rdata unpacks with empty names, which pack into
		// a record too short for its length (FuzzHandler's second
		// find). The client gets SERVFAIL, not a broken message.
		return h.errorReply(f.req, dns.RcodeServerFailure, f.limit)
	}
	return out
}
