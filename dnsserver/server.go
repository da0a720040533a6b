// Package dnsserver answers DNS for beacon's zone from the agent's
// in-memory catalog: services, their instances and the agents' nodes. See
// README.md for the names, the rules and the choices made.
package dnsserver

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/miekg/dns"
	"go.uber.org/zap"
)

// Config configures a Server. The zero value of each field but Addr and
// Domain means its default.
type Config struct {
	Addr           string   // UDP and TCP, "127.0.0.1:8600"; port 0 picks a free port
	Domain         string   // the zone, "beacon."
	TTL            uint32   // of every record answered; 0 means 5
	IncludeWarning bool     // answer warning instances, not only passing ones
	Recursors      []string // "ip:port" upstreams for names outside the zone; none: REFUSED
	Sockets        int      // UDP sockets sharing the port (SO_REUSEPORT); 0 means runtime.NumCPU()
	MaxInFlight    int      // bound on queries answered at once; 0 means 1024
}

// Defaults.
const (
	DefaultAddr        = "127.0.0.1:8600"
	DefaultDomain      = "beacon."
	DefaultTTL         = 5
	DefaultMaxInFlight = 1024
)

const (
	// udpWorkersPerSocket goroutines read, answer and write on each UDP
	// socket: answering never blocks, so a few are enough to overlap the
	// system calls.
	udpWorkersPerSocket = 4
	tcpIdleTimeout      = 10 * time.Second // between queries on a connection (RFC 7766)
	tcpIOTimeout        = 5 * time.Second  // to read the rest of a query, to write an answer
)

// ErrClosed is returned by Listen after Shutdown.
var ErrClosed = errors.New("dnsserver: server is shut down")

// Server is beacon's DNS server: a fixed pool of goroutines on several UDP
// sockets, and one goroutine per TCP connection up to MaxInFlight.
type Server struct {
	cfg Config
	lg  *zap.Logger
	h   *handler
	fwd *forwarder

	fwdSlots chan struct{} // forwarded queries in flight
	tcpSlots chan struct{} // TCP connections being served

	mu      sync.Mutex
	udp     []*net.UDPConn
	tcp     net.Listener
	pktinfo bool // UDP bound to an unspecified address: reply from the address asked
	addr    string
	conns   map[net.Conn]struct{}
	serving bool
	closed  bool
	done    chan struct{}
	wg      sync.WaitGroup
}

// New checks cfg and returns a server that answers from cat once Listen
// and Serve are called.
func New(cfg Config, cat Catalog, lg *zap.Logger) (*Server, error) {
	if cat == nil {
		return nil, errors.New("dnsserver: no catalog")
	}
	if lg == nil {
		lg = zap.NewNop()
	}
	if err := cfg.normalize(); err != nil {
		return nil, err
	}
	s := &Server{
		cfg: cfg, lg: lg,
		h: &handler{
			zone: cfg.Domain, dotZone: "." + cfg.Domain, ttl: cfg.TTL, warn: cfg.IncludeWarning, cat: cat,
			nsName: "ns." + cfg.Domain, nsAddr: netip.AddrFrom4([4]byte{127, 0, 0, 1}),
			serial: uint32(time.Now().Unix()), recurse: len(cfg.Recursors) > 0,
		},
		fwdSlots: make(chan struct{}, cfg.MaxInFlight),
		tcpSlots: make(chan struct{}, cfg.MaxInFlight),
		conns:    map[net.Conn]struct{}{},
		done:     make(chan struct{}),
	}
	if len(cfg.Recursors) > 0 {
		s.fwd = newForwarder(cfg.Recursors)
	}
	return s, nil
}

func (c *Config) normalize() error {
	if c.Addr == "" {
		c.Addr = DefaultAddr
	}
	host, port, err := net.SplitHostPort(c.Addr)
	if err != nil {
		return fmt.Errorf("dns-addr %q is not host:port", c.Addr)
	}
	if err := checkHostPort(host, port); err != nil {
		return fmt.Errorf("dns-addr %q: %v", c.Addr, err)
	}

	if c.Domain == "" {
		c.Domain = DefaultDomain
	}
	c.Domain = dns.Fqdn(strings.ToLower(c.Domain))
	if _, ok := dns.IsDomainName(c.Domain); !ok || c.Domain == "." || strings.ContainsAny(c.Domain, `\ `) ||
		strings.Contains(c.Domain, "..") || strings.HasPrefix(c.Domain, ".") {
		return fmt.Errorf("domain %q is not a DNS name under the root", c.Domain)
	}
	if c.TTL == 0 {
		c.TTL = DefaultTTL
	}

	recursors := make([]string, 0, len(c.Recursors))
	for _, r := range c.Recursors {
		r = strings.TrimSpace(r)
		if r == "" {
			continue
		}
		host, port, err := net.SplitHostPort(r)
		if err != nil {
			host, port = r, "53" // a bare address: the DNS port
			if strings.Count(r, ":") > 1 {
				host = strings.Trim(r, "[]")
			}
		}
		if err := checkHostPort(host, port); err != nil || host == "" || port == "0" {
			return fmt.Errorf("dns-recursors: %q is not ip:port", r)
		}
		recursors = append(recursors, net.JoinHostPort(host, port))
	}
	c.Recursors = recursors

	switch {
	case c.Sockets < 0:
		return fmt.Errorf("dns sockets: %d is not a count of sockets", c.Sockets)
	case c.Sockets == 0:
		c.Sockets = runtime.NumCPU()
	}
	switch {
	case c.MaxInFlight < 0:
		return fmt.Errorf("dns max in flight: %d is not a count of queries", c.MaxInFlight)
	case c.MaxInFlight == 0:
		c.MaxInFlight = DefaultMaxInFlight
	}
	return nil
}

func checkHostPort(host, port string) error {
	if host != "" && host != "localhost" {
		if _, err := netip.ParseAddr(host); err != nil {
			return fmt.Errorf("%q is not an IP address", host)
		}
	}
	if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
		return fmt.Errorf("%q is not a port", port)
	}
	return nil
}

// Addr is the address the server listens on (with the port chosen, after
// Listen with port 0).
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.addr != "" {
		return s.addr
	}
	return s.cfg.Addr
}

// Listen binds the TCP listener and the UDP sockets. An address in use is
// an error that names dns-addr.
func (s *Server) Listen() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.closed:
		return ErrClosed
	case s.tcp != nil:
		return errors.New("dnsserver: already listening")
	}
	host, port, _ := net.SplitHostPort(s.cfg.Addr)
	var err error
	for attempt := 0; attempt < 20; attempt++ {
		// With port 0 the TCP port is picked first; its UDP twin may be
		// taken: pick again.
		if err = s.bind(host, port); err == nil || port != "0" || !errors.Is(err, syscall.EADDRINUSE) {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("dns-addr %s: %w", s.cfg.Addr, err)
	}
	return nil
}

// bind: TCP first, without SO_REUSEPORT, so that a second agent on the
// same address fails here; then a probe that the UDP port is free (a
// SO_REUSEPORT socket of another process of the same user would otherwise
// silently share it); then the UDP sockets, sharing the port.
func (s *Server) bind(host, port string) error {
	ctx := context.Background()
	var plain net.ListenConfig
	tl, err := plain.Listen(ctx, "tcp", net.JoinHostPort(host, port))
	if err != nil {
		return err
	}
	ap := tl.Addr().(*net.TCPAddr).AddrPort()
	udpAddr := ap.String()
	probe, err := plain.ListenPacket(ctx, "udp", udpAddr)
	if err != nil {
		tl.Close()
		return err
	}
	probe.Close()

	n := s.cfg.Sockets
	if !reusePortSupported {
		n = 1
	}
	pktinfo := ap.Addr().IsUnspecified()
	lc := net.ListenConfig{Control: socketControl(n > 1, pktinfo)}
	conns := make([]*net.UDPConn, 0, n)
	for range n {
		pc, err := lc.ListenPacket(ctx, "udp", udpAddr)
		if err != nil {
			tl.Close()
			for _, c := range conns {
				c.Close()
			}
			return err
		}
		c := pc.(*net.UDPConn)
		_ = c.SetReadBuffer(1 << 20) // absorb bursts; the kernel caps it
		conns = append(conns, c)
	}
	s.tcp, s.udp, s.pktinfo, s.addr = tl, conns, pktinfo && pktinfoSupported, udpAddr
	if a := ap.Addr().Unmap(); !a.IsUnspecified() {
		s.h.nsAddr = a
	}
	return nil
}

// Serve starts answering in the background, on the sockets Listen bound.
// Without them it does nothing.
func (s *Server) Serve() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tcp == nil || s.serving || s.closed {
		return
	}
	s.serving = true
	workers := min(max(s.cfg.MaxInFlight/len(s.udp), 1), udpWorkersPerSocket)
	for _, c := range s.udp {
		for range workers {
			s.wg.Add(1)
			go s.serveUDP(c)
		}
	}
	s.wg.Add(1)
	go s.acceptTCP(s.tcp)
	s.lg.Info("dns serving", zap.String("addr", s.addr), zap.String("zone", s.cfg.Domain),
		zap.Int("udp-sockets", len(s.udp)), zap.Int("udp-workers", workers*len(s.udp)),
		zap.Strings("recursors", s.cfg.Recursors))
}

// Shutdown closes every socket and connection and waits, at most until
// ctx ends, for the queries being answered to finish.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	if !s.closed {
		s.closed = true
		close(s.done)
		for _, c := range s.udp {
			c.Close()
		}
		if s.tcp != nil {
			s.tcp.Close()
		}
		for c := range s.conns {
			c.Close()
		}
	}
	s.mu.Unlock()
	finished := make(chan struct{})
	go func() { s.wg.Wait(); close(finished) }()
	select {
	case <-finished:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// serveUDP is one worker of a UDP socket: read, answer, write, with its
// own buffers, never a goroutine per packet.
func (s *Server) serveUDP(c *net.UDPConn) {
	defer s.wg.Done()
	in := make([]byte, dns.MaxMsgSize)
	out := make([]byte, advertisedUDPSize+1024)
	for {
		var (
			n       int
			from    netip.AddrPort
			session *dns.SessionUDP
			err     error
		)
		if s.pktinfo {
			n, session, err = dns.ReadFromSessionUDP(c, in)
		} else {
			n, from, err = c.ReadFromUDPAddrPort(in)
		}
		if err != nil {
			if errors.Is(err, net.ErrClosed) || s.isClosed() {
				return
			}
			continue
		}
		reply := func(b []byte) {
			if s.pktinfo {
				_, _ = dns.WriteToSessionUDP(c, b, session)
			} else {
				_, _ = c.WriteToUDPAddrPort(b, from)
			}
		}
		resp, fwd := s.safeAnswer(in[:n], false, out)
		switch {
		case fwd != nil:
			s.forwardAsync(fwd, reply)
		case resp != nil:
			reply(resp)
		}
	}
}

// forwardAsync forwards in a goroutine of its own, so that a slow
// recursor never holds up answers from the zone; at most MaxInFlight at
// once, beyond which the answer is SERVFAIL at once.
func (s *Server) forwardAsync(f *forwardReq, reply func([]byte)) {
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
		defer func() { <-s.fwdSlots; s.wg.Done() }()
		if b := s.h.forward(s.fwd, f); b != nil {
			reply(b)
		}
	}()
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
				resp = s.h.forward(s.fwd, fwd)
				<-s.fwdSlots
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
