package dnsserver

import (
	"time"

	"github.com/miekg/dns"
)

// forwardTimeout bounds one exchange with one recursor.
const forwardTimeout = 2 * time.Second

// forwarder relays questions outside the zone to the recursors, tried in
// the order configured until one answers.
type forwarder struct {
	upstreams []string
	udp, tcp  *dns.Client
}

func newForwarder(upstreams []string) *forwarder {
	return &forwarder{
		upstreams: upstreams,
		udp:       &dns.Client{Net: "udp", Timeout: forwardTimeout},
		tcp:       &dns.Client{Net: "tcp", Timeout: forwardTimeout},
	}
}

// forward answers f from the recursors; SERVFAIL when none answers. The
// client's question, flags and EDNS0 go upstream as they came, under a
// fresh id; the answer comes back under the client's id, over the
// client's transport, within the client's size.
func (h *handler) forward(fw *forwarder, f *forwardReq) []byte {
	q := f.req.Copy()
	q.Id = dns.Id()
	c := fw.udp
	if f.tcp {
		c = fw.tcp
	}
	var resp *dns.Msg
	for _, up := range fw.upstreams {
		r, _, err := c.Exchange(q, up)
		if err == nil && r != nil {
			resp = r
			break
		}
	}
	if resp == nil {
		return h.errorReply(f.req, dns.RcodeServerFailure, f.limit)
	}
	resp.Id = f.req.Id
	resp.RecursionAvailable = true
	if o := resp.IsEdns0(); o != nil {
		o.SetUDPSize(advertisedUDPSize)
	}
	out, err := fit(resp, f.limit, nil)
	if err != nil {
		return h.errorReply(f.req, dns.RcodeServerFailure, f.limit)
	}
	return out
}
