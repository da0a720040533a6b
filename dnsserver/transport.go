package dnsserver

import (
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/netip"
	"slices"
	"time"

	"github.com/miekg/dns"
	"go.uber.org/zap"
)

// serveUDP is one worker of a UDP socket: read, answer, write, with its
// own buffers, never a goroutine per packet.
func (s *Server) serveUDP(c *net.UDPConn) {
	defer s.wg.Done()
	counts := s.m.newShard()
	in := make([]byte, dns.MaxMsgSize)
	out := make([]byte, advertisedUDPSize+1024)
	var pb pktinfoBuf
	for {
		var (
			n    int
			from netip.AddrPort
			oob  []byte // the reply's source address, bound to an unspecified one
			err  error
		)
		if s.pktinfo {
			n, from, oob, err = readPktinfo(c, in, &pb)
		} else {
			n, from, err = c.ReadFromUDPAddrPort(in)
		}
		if err != nil {
			if errors.Is(err, net.ErrClosed) || s.isClosed() {
				return
			}
			continue
		}
		start := clock()
		resp, fwd, rcode := s.safeAnswer(in[:n], false, out)
		switch {
		case fwd != nil:
			s.forwardAsync(fwd, c, from, slices.Clone(oob), start)
		case resp != nil:
			writeUDP(c, resp, from, oob)
			counts.observe(in[:n], rcode, transportUDP, start)
		}
	}
}

// writeUDP sends b to the client a packet came from, from the address it
// asked when oob says so.
func writeUDP(c *net.UDPConn, b []byte, to netip.AddrPort, oob []byte) {
	if oob != nil {
		_, _, _ = c.WriteMsgUDPAddrPort(b, oob, to)
	} else {
		_, _ = c.WriteToUDPAddrPort(b, to)
	}
}

// forwardAsync forwards in a goroutine of its own, so that a slow
// recursor never holds up answers from the zone; at most MaxInFlight at
// once, beyond which the answer is SERVFAIL at once.
func (s *Server) forwardAsync(f *forwardReq, c *net.UDPConn, from netip.AddrPort, oob []byte, start time.Duration) {
	reply := func(b []byte) {
		if b != nil {
			writeUDP(c, b, from, oob)
			s.m.shared.observeForwarded(f, b, transportUDP, start)
		}
	}
	if instead, ok := s.admitForward(f, from.Addr()); !ok {
		reply(instead)
		return
	}
	if !s.acquireForward() {
		reply(s.h.errorReply(f.req, dns.RcodeServerFailure, f.limit))
		return
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		reply(s.forward(f))
	}()
}

// forwardTCP forwards a query of a TCP connection and waits for the answer.
func (s *Server) forwardTCP(f *forwardReq, remote net.Addr) []byte {
	var client netip.Addr
	if ta, ok := remote.(*net.TCPAddr); ok {
		client = ta.AddrPort().Addr()
	}
	if instead, ok := s.admitForward(f, client); !ok {
		return instead
	}
	if !s.acquireForward() {
		return s.h.errorReply(f.req, dns.RcodeServerFailure, f.limit)
	}
	return s.forward(f)
}

// forward forwards with a forwarding slot taken, and frees it before the
// answer goes out.
func (s *Server) forward(f *forwardReq) (out []byte) {
	defer func() {
		<-s.fwdSlots
		if r := recover(); r != nil {
			s.lg.Error("panic forwarding a DNS query; no answer sent", zap.Any("panic", r))
			out = nil
		}
	}()
	return s.h.forward(s.fwd, f)
}

func (s *Server) isClosed() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

// acceptTCP accepts every connection; the connection table closes older
// ones to stay within its caps (tcplimits.go), so that a client holding
// many never keeps a new one waiting.
func (s *Server) acceptTCP(l net.Listener) {
	defer s.wg.Done()
	backoff := 5 * time.Millisecond
	for {
		nc, err := l.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) || s.isClosed() {
				return
			}
			// Out of file descriptors, say: back off rather than spin.
			select {
			case <-s.done:
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, time.Second)
			continue
		}
		backoff = 5 * time.Millisecond
		c := &tcpConn{Conn: nc, client: clientKey(nc.RemoteAddr())}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			nc.Close()
			return
		}
		s.tcpConns.admit(c)
		s.wg.Add(1)
		s.mu.Unlock()
		go s.serveTCP(c)
	}
}

// serveTCP answers the queries of one connection in turn (RFC 7766),
// until the client closes it, it idles, it reaches its lifetime or its
// count of queries, or the table closes it to make room.
func (s *Server) serveTCP(c *tcpConn) {
	defer func() {
		c.Close()
		s.tcpConns.remove(c)
		s.wg.Done()
	}()
	end := time.Now().Add(s.cfg.TCPMaxLifetime)
	var size [2]byte
	in := make([]byte, 512)
	out := make([]byte, 4096) // grows to the largest answer of the connection
	for range s.cfg.TCPMaxQueries {
		_ = c.SetReadDeadline(earliest(time.Now().Add(s.cfg.TCPIdleTimeout), end))
		if _, err := io.ReadFull(c, size[:]); err != nil {
			return
		}
		n := int(binary.BigEndian.Uint16(size[:]))
		if n > len(in) {
			in = make([]byte, n)
		}
		_ = c.SetReadDeadline(earliest(time.Now().Add(tcpIOTimeout), end))
		if _, err := io.ReadFull(c, in[:n]); err != nil {
			return
		}
		c.busy.Store(true)
		start := clock()
		resp, fwd, rcode := s.safeAnswer(in[:n], true, out[2:])
		if fwd != nil {
			resp = s.forwardTCP(fwd, c.RemoteAddr())
			rcode = wireRcode(resp)
		}
		if resp != nil {
			if &resp[0] != &out[2] { // packed elsewhere: larger, or forwarded
				if 2+len(resp) > len(out) {
					out = make([]byte, 2+len(resp))
				}
				copy(out[2:], resp)
			}
			msg := out[:2+len(resp)]
			binary.BigEndian.PutUint16(msg, uint16(len(resp)))
			// The answer gets its full time even past the lifetime:
			// a query read is a query answered.
			_ = c.SetWriteDeadline(time.Now().Add(tcpIOTimeout))
			if _, err := c.Write(msg); err != nil {
				return
			}
			s.m.shared.observe(in[:n], rcode, transportTCP, start)
		}
		c.touch()
		c.busy.Store(false)
	}
}

func earliest(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// safeAnswer is answer with a last line of defence: a bug must not take
// the agent down with it. FuzzHandler calls answer without it.
func (s *Server) safeAnswer(pkt []byte, tcp bool, buf []byte) (resp []byte, fwd *forwardReq, rcode int) {
	defer func() {
		if r := recover(); r != nil {
			s.lg.Error("panic answering a DNS query; no answer sent", zap.Any("panic", r), zap.Binary("packet", pkt))
			resp, fwd = nil, nil
		}
	}()
	return s.h.answer(pkt, tcp, buf)
}

func (s *Server) acquireForward() bool {
	select {
	case s.fwdSlots <- struct{}{}:
		return true
	default:
		return false
	}
}
