package apiserver

import (
	"errors"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// ConnLimiter bounds the client connections of one kind of listener: all
// of them together (Limits.MaxConns) and, unless perClient is off, those
// of one client address (Limits.MaxConnsPerClient; an IPv6 client by its
// /64, which one host usually holds whole, as the DNS server counts it).
//
// A connection over a bound is closed as soon as it is accepted, before
// any TLS handshake or HTTP/2 preface: the client hears of it at once (its
// call fails Unavailable, "connection closed" or a handshake EOF) instead
// of waiting, and the agent spends on it no goroutine, no handshake and no
// buffer. Answering in gRPC's terms instead (an HTTP/2 GOAWAY whose debug
// data names the limit) would mean serving the connection first, which
// under TLS is the full handshake: the very cost the bound is there to
// refuse. So the limit is named on the agent's side: a log line (at most
// one a second, naming the limit, its key and the address) and
// beacon_api_connections_refused_total{limit}.
type ConnLimiter struct {
	maxConns, maxPerClient int
	perClient              bool
	lg                     *zap.Logger

	mu       sync.Mutex
	open     int
	byClient map[netip.Prefix]int
	lastLog  atomic.Int64 // unix nanoseconds of the last refusal logged
}

// newConnLimiter bounds one kind of listener; perClient counts by client
// address too (off for the unix socket, where every peer is the same).
func newConnLimiter(l Limits, perClient bool, lg *zap.Logger) *ConnLimiter {
	return &ConnLimiter{maxConns: l.MaxConns, maxPerClient: l.MaxConnsPerClient, perClient: perClient,
		lg: lg, byClient: map[netip.Prefix]int{}}
}

// Listener returns l with the limiter's bounds on what it accepts.
func (cl *ConnLimiter) Listener(l net.Listener) net.Listener {
	return &limitedListener{Listener: l, cl: cl}
}

// Open is how many accepted connections are open.
func (cl *ConnLimiter) Open() int {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	return cl.open
}

// clientOf is the key a connection counts under: its address, an IPv6
// one by its /64. ok is false when the address is not IP (no per-client
// count).
func clientOf(addr net.Addr) (netip.Prefix, bool) {
	ta, ok := addr.(*net.TCPAddr)
	if !ok {
		return netip.Prefix{}, false
	}
	ip, ok := netip.AddrFromSlice(ta.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	ip = ip.Unmap()
	bits := 32
	if ip.Is6() {
		bits = 64
	}
	p, err := ip.Prefix(bits)
	return p, err == nil
}

// take counts a new connection from addr, or names the limit it is over.
func (cl *ConnLimiter) take(addr net.Addr) (release func(), limit string) {
	client, byClient := clientOf(addr)
	byClient = byClient && cl.perClient
	cl.mu.Lock()
	defer cl.mu.Unlock()
	if cl.open >= cl.maxConns {
		return nil, "max-connections"
	}
	if byClient && cl.byClient[client] >= cl.maxPerClient {
		return nil, "max-connections-per-client"
	}
	cl.open++
	if byClient {
		cl.byClient[client]++
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			cl.mu.Lock()
			defer cl.mu.Unlock()
			cl.open--
			if byClient {
				if cl.byClient[client]--; cl.byClient[client] <= 0 {
					delete(cl.byClient, client)
				}
			}
		})
	}, ""
}

// refused counts and (at most once a second) logs a refused connection.
func (cl *ConnLimiter) refused(addr net.Addr, limit string) {
	connsRefused.WithLabelValues(limit).Inc()
	now := time.Now().UnixNano()
	if last := cl.lastLog.Load(); now-last > int64(time.Second) && cl.lastLog.CompareAndSwap(last, now) {
		value := cl.maxConns
		if limit == "max-connections-per-client" {
			value = cl.maxPerClient
		}
		cl.lg.Warn("refused an API connection over its limit", zap.String("from", addr.String()),
			zap.String("limit", limit), zap.Int("value", value))
	}
}

var connsRefused = prometheus.NewCounterVec(prometheus.CounterOpts{
	Name: "beacon_api_connections_refused_total",
	Help: "API connections closed as soon as accepted, by the limit they were over (max-connections, max-connections-per-client).",
}, []string{"limit"})

func init() {
	if err := prometheus.Register(connsRefused); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			connsRefused = are.ExistingCollector.(*prometheus.CounterVec)
		}
	}
}

type limitedListener struct {
	net.Listener
	cl *ConnLimiter
}

// Accept returns the next connection within the bounds; one over them is
// closed here and never reaches gRPC.
func (l *limitedListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		release, limit := l.cl.take(c.RemoteAddr())
		if limit != "" {
			l.cl.refused(c.RemoteAddr(), limit)
			c.Close()
			continue
		}
		return &countedConn{Conn: c, release: release}, nil
	}
}

// countedConn gives back its slot when closed (gRPC closes every
// connection it accepted, however it ends; a TLS connection closes the
// one under it).
type countedConn struct {
	net.Conn
	release func()
}

// NetConn is the connection under it (peercred reads a unix peer's
// credentials from it).
func (c *countedConn) NetConn() net.Conn { return c.Conn }

func (c *countedConn) Close() error {
	c.release()
	return c.Conn.Close()
}
