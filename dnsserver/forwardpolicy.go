package dnsserver

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/miekg/dns"
	"go.uber.org/zap"
)

// Forwarding makes the server a resolver for whoever may ask it: an open
// resolver once bound to a reachable address (an amplifier of about 38
// times for anyone who spoofs a victim's address), and a loop when a
// recursor leads back to it. So it serves only the client networks
// allowed (loopback unless configured), never forwards to its own
// address, and keeps one query from coming back to be forwarded again
// (forward.go).

// loopbackNets are the client networks forwarded for by default.
var loopbackNets = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}

// parseAllow reads ForwardAllow: CIDR networks or bare addresses; none
// means loopback.
func parseAllow(nets []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, n := range nets {
		n = strings.TrimSpace(n)
		if n == "" {
			continue
		}
		p, err := netip.ParsePrefix(n)
		if err != nil {
			a, aerr := netip.ParseAddr(n)
			if aerr != nil {
				return nil, fmt.Errorf("dns-forward-allow: %q is not a network (10.0.0.0/8) or an IP address", n)
			}
			p = netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen())
		}
		if p.Addr().Is4In6() {
			a := p.Addr().Unmap()
			p = netip.PrefixFrom(a, max(p.Bits()-96, 0))
		}
		out = append(out, p.Masked())
	}
	if len(out) == 0 {
		out = loopbackNets
	}
	return out, nil
}

// forwardAllowed says whether queries from client may be forwarded.
func (s *Server) forwardAllowed(client netip.Addr) bool {
	client = client.Unmap()
	for _, p := range s.allow {
		if p.Contains(client) {
			return true
		}
	}
	return false
}

// checkNotSelf fails when a recursor is the server's own address, addr
// (host:port, the host maybe empty, "localhost" or unspecified: then
// every address of this host on that port is the server's).
func checkNotSelf(recursors []string, addr string) error {
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return nil // normalize has said so already
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil
	}
	var self netip.Addr
	switch host {
	case "", "localhost":
	default:
		if self, err = netip.ParseAddr(host); err != nil {
			return nil
		}
		self = self.Unmap()
	}
	for _, r := range recursors {
		rec, err := netip.ParseAddrPort(r)
		if err != nil || int(rec.Port()) != port {
			continue
		}
		ip := rec.Addr().Unmap()
		var same bool
		switch {
		case host == "localhost":
			same = ip.IsLoopback()
		case !self.IsValid() || self.IsUnspecified():
			same = ip.IsLoopback() || ip.IsUnspecified() || isLocalAddr(ip)
		default:
			same = ip == self
		}
		if same {
			return fmt.Errorf("dns-recursors: %s %w (dns-addr %s): every query forwarded would come back to be forwarded again", r, ErrRecursorIsSelf, addr)
		}
	}
	return nil
}

// isLocalAddr says whether ip is one of this host's interface addresses.
func isLocalAddr(ip netip.Addr) bool {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return false
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok {
			if la, ok := netip.AddrFromSlice(n.IP); ok && la.Unmap() == ip {
				return true
			}
		}
	}
	return false
}

// admitForward decides, before a query takes a forwarding slot, whether
// it is forwarded: it returns the answer to send instead when not.
func (s *Server) admitForward(f *forwardReq, client netip.Addr) (instead []byte, ok bool) {
	switch {
	case !s.forwardAllowed(client):
		return s.h.errorReplyRA(f.req, dns.RcodeRefused, f.limit, false), false
	case s.fwd.looped(f.req):
		s.warnLoop(client)
		return s.h.errorReply(f.req, dns.RcodeServerFailure, f.limit), false
	}
	return nil, true
}

// loopWarnEvery spaces the warnings about a forwarding loop.
const loopWarnEvery = time.Minute

func (s *Server) warnLoop(from netip.Addr) {
	now := time.Now().UnixNano()
	last := s.loopWarned.Load()
	if now-last < int64(loopWarnEvery) || !s.loopWarned.CompareAndSwap(last, now) {
		return
	}
	s.lg.Warn("forwarding loop: a query this server forwarded came back to it; a recursor in dns-recursors leads back here (answered SERVFAIL)",
		zap.Stringer("from", from), zap.Strings("recursors", s.cfg.Recursors))
}
