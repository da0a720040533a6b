// Package dnsserver answers DNS for beacon's zone from the agent's
// in-memory catalog: services, their instances and the agents' nodes. See
// README.md for the names, the rules and the choices made.
package dnsserver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/miekg/dns"
	"go.uber.org/zap"
)

// Config configures a Server. A zero field means its default.
type Config struct {
	Addr           string   // UDP and TCP, "127.0.0.1:8600"; port 0 picks a free port
	Domain         string   // the zone, "beacon."
	TTL            uint32   // of every record answered; 0 means 5
	IncludeWarning bool     // answer warning instances, not only passing ones
	Recursors      []string // "ip:port" upstreams for names outside the zone; none: REFUSED
	Sockets        int      // UDP sockets sharing the port (SO_REUSEPORT); 0 means runtime.NumCPU()
	MaxInFlight    int      // bound on queries forwarded at once (and on UDP workers); 0 means 1024

	// ForwardAllow are the client networks ("10.0.0.0/8", or a bare IP)
	// whose queries outside the zone are forwarded; the others are
	// REFUSED. None means loopback only: 127.0.0.0/8 and ::1.
	ForwardAllow []string

	// TCP: how many connections, and how long each may stay (see tcplimits.go).
	TCPMaxConns          int           // all clients together; 0 means 1024
	TCPMaxConnsPerClient int           // per client address (IPv6: per /64); 0 means 16
	TCPIdleTimeout       time.Duration // between queries; 0 means 5 s
	TCPMaxLifetime       time.Duration // of a connection, however busy; 0 means 30 s
	TCPMaxQueries        int           // answered on one connection; 0 means 1000
}

// Defaults.
const (
	DefaultAddr        = "127.0.0.1:8600"
	DefaultDomain      = "beacon."
	DefaultTTL         = 5
	DefaultMaxInFlight = 1024

	DefaultTCPMaxConns          = 1024
	DefaultTCPMaxConnsPerClient = 16
	DefaultTCPIdleTimeout       = 5 * time.Second
	DefaultTCPMaxLifetime       = 30 * time.Second
	DefaultTCPMaxQueries        = 1000
)

const (
	// udpWorkersPerSocket goroutines read, answer and write on each UDP
	// socket: answering never blocks, so a few are enough to overlap the
	// system calls.
	udpWorkersPerSocket = 4
	tcpIOTimeout        = 5 * time.Second // to read the rest of a query, to write an answer
)

// Server is beacon's DNS server: a fixed pool of goroutines on several UDP
// sockets, and one goroutine per TCP connection, their number capped.
type Server struct {
	cfg   Config
	lg    *zap.Logger
	h     *handler
	fwd   *forwarder
	allow []netip.Prefix // client networks forwarded for

	fwdSlots   chan struct{} // forwarded queries in flight
	loopWarned atomic.Int64  // when a forwarding loop was last logged, unix ns
	tcpConns   *connTable    // TCP connections being served
	m          *metrics

	mu      sync.Mutex
	udp     []*net.UDPConn
	tcp     net.Listener
	pktinfo bool // UDP bound to an unspecified address: reply from the address asked
	addr    string
	serving bool
	closed  bool
	done    chan struct{}
	wg      sync.WaitGroup
}

// Option configures New.
type Option func(*Server)

// WithLogger sets the logger (default none).
func WithLogger(lg *zap.Logger) Option { return func(s *Server) { s.lg = lg } }

// New checks cfg (the agent's dns-* settings) and returns a server that
// answers from cat once Listen and Serve are called.
func New(cfg Config, cat Catalog, opts ...Option) (*Server, error) {
	if cat == nil {
		return nil, errors.New("dnsserver: no catalog")
	}
	if err := cfg.normalize(); err != nil {
		return nil, err
	}
	s := &Server{
		cfg: cfg, lg: zap.NewNop(),
		h: &handler{
			zone: cfg.Domain, dotZone: "." + cfg.Domain, ttl: cfg.TTL, warn: cfg.IncludeWarning, cat: cat,
			nsName: "ns." + cfg.Domain, nsAddr: netip.AddrFrom4([4]byte{127, 0, 0, 1}),
			serial: uint32(time.Now().Unix()), recurse: len(cfg.Recursors) > 0,
		},
		fwdSlots: make(chan struct{}, cfg.MaxInFlight),
		tcpConns: newConnTable(cfg.TCPMaxConns, cfg.TCPMaxConnsPerClient),
		done:     make(chan struct{}),
		m:        newMetrics(),
	}
	for _, o := range opts {
		o(s)
	}
	var err error
	if s.allow, err = parseAllow(cfg.ForwardAllow); err != nil {
		return nil, err
	}
	if len(cfg.Recursors) > 0 {
		// Forwarding to ourselves is a loop from the first query: refuse
		// it now when the port is known, else in Listen.
		if _, port, _ := net.SplitHostPort(cfg.Addr); port != "0" {
			if err := checkNotSelf(cfg.Recursors, cfg.Addr); err != nil {
				return nil, err
			}
		}
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
	return c.normalizeTCP()
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
	if s.fwd != nil {
		if err := checkNotSelf(s.cfg.Recursors, s.addr); err != nil {
			s.unbind()
			return err
		}
	}
	return nil
}

// unbind closes what bind opened.
func (s *Server) unbind() {
	s.tcp.Close()
	for _, c := range s.udp {
		c.Close()
	}
	s.tcp, s.udp = nil, nil
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
		s.tcpConns.closeAll()
	}
	s.mu.Unlock()
	finished := make(chan struct{})
	go func() { s.wg.Wait(); s.h.builds.Wait(); close(finished) }()
	select {
	case <-finished:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
