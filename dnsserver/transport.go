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
		resp, fwd := s.safeAnswer(in[:n], false, out)
		switch {
		case fwd != nil:
			s.forwardAsync(fwd, c, from, slices.Clone(oob))
		case resp != nil:
			writeUDP(c, resp, from, oob)
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
func (s *Server) forwardAsync(f *forwardReq, c *net.UDPConn, from netip.AddrPort, oob []byte) {
	reply := func(b []byte) { writeUDP(c, b, from, oob) }
	select {
	case s.fwdSlots <- struct{}{}:
	default:
		if b := s.h.errorReply(f.req, dns.RcodeServerFailure, f.limit); b != nil {
			reply(b)
		}
		return
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if b := s.forward(f); b != nil {
			reply(b)
		}
	}()
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

// acceptTCP accepts connections while fewer than MaxInFlight are being
// served; beyond, they wait in the kernel's backlog.
func (s *Server) acceptTCP(l net.Listener) {
	defer s.wg.Done()
	backoff := 5 * time.Millisecond
	for {
		select {
		case s.tcpSlots <- struct{}{}:
		case <-s.done:
			return
		}
		c, err := l.Accept()
		if err != nil {
			<-s.tcpSlots
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
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			c.Close()
			<-s.tcpSlots
			return
		}
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go s.serveTCP(c)
	}
}

// serveTCP answers the queries of one connection in turn (RFC 7766).
func (s *Server) serveTCP(c net.Conn) {
	defer func() {
		c.Close()
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
		<-s.tcpSlots
		s.wg.Done()
	}()
	var size [2]byte
	in := make([]byte, 512)
	out := make([]byte, 4096) // grows to the largest answer of the connection
	for {
		_ = c.SetReadDeadline(time.Now().Add(tcpIdleTimeout))
		if _, err := io.ReadFull(c, size[:]); err != nil {
			return
		}
		n := int(binary.BigEndian.Uint16(size[:]))
		if n > len(in) {
			in = make([]byte, n)
		}
		_ = c.SetReadDeadline(time.Now().Add(tcpIOTimeout))
		if _, err := io.ReadFull(c, in[:n]); err != nil {
			return
		}
		resp, fwd := s.safeAnswer(in[:n], true, out[2:])
		if fwd != nil {
			if !s.acquireForward() {
				resp = s.h.errorReply(fwd.req, dns.RcodeServerFailure, fwd.limit)
			} else {
				resp = s.forward(fwd)
			}
		}
		if resp == nil {
			continue
		}
		if &resp[0] != &out[2] { // packed elsewhere: larger, or forwarded
			if 2+len(resp) > len(out) {
				out = make([]byte, 2+len(resp))
			}
			copy(out[2:], resp)
		}
		msg := out[:2+len(resp)]
		binary.BigEndian.PutUint16(msg, uint16(len(resp)))
		_ = c.SetWriteDeadline(time.Now().Add(tcpIOTimeout))
		if _, err := c.Write(msg); err != nil {
			return
		}
	}
}

// safeAnswer is answer with a last line of defence: a bug must not take
// the agent down with it. FuzzHandler calls answer without it.
func (s *Server) safeAnswer(pkt []byte, tcp bool, buf []byte) (resp []byte, fwd *forwardReq) {
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
