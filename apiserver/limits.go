package apiserver

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/stats"
)

// Limits bound what clients can make the agent hold: per connection, per
// client address and per agent. The defaults are far above what a large
// host's applications use (an SDK client multiplexes everything it does
// on one connection: a session per hold at most, a stream per watch);
// they stop a client that opens streams or sessions in a loop at its own
// connection, and many connections at the agent's bounds.
//
// The agent-wide bounds (MaxConns, MaxStreams) are kept apart for the TCP
// listener (plain or TLS) and for the owner-only unix socket, each with
// the same values: network clients that fill theirs do not lock the
// host's operator out (its way in to revoke their token, say), and a
// local process on the socket is still bounded. MaxConnsPerClient is not
// applied on the socket, where every peer has the same address (and is
// the agent's own user).
type Limits struct {
	// MaxConns bounds the client connections open at once (on the TCP
	// listener; the unix socket has as many of its own). One past it is
	// closed as soon as accepted (see ConnLimiter).
	MaxConns int
	// MaxConnsPerClient bounds the TCP connections of one client address
	// (an IPv6 one by its /64).
	MaxConnsPerClient int
	// MaxStreams bounds the calls in flight on the agent, streams and
	// unary calls together, over every connection (the TCP listener's;
	// the unix socket's have as many of their own).
	MaxStreams int
	// MaxStreamsPerConn bounds the calls in flight on one connection,
	// streams and unary calls together. One past it answers
	// ResourceExhausted naming the limit.
	MaxStreamsPerConn int
	// MaxSessionsPerConn bounds the Session.Open streams of one
	// connection.
	MaxSessionsPerConn int
	// HandshakeTimeout bounds how long a new connection may take to
	// become HTTP/2 (its TLS handshake included): one that says nothing
	// gives its connection slot back after it, not after gRPC's default
	// of 120 s.
	HandshakeTimeout time.Duration
	// KeepaliveMinTime: a client pinging more often than this is told
	// to go away (too_many_pings), so pings cannot be a flood.
	KeepaliveMinTime time.Duration
	// KeepaliveTime, KeepaliveTimeout: the agent pings a connection
	// quiet for KeepaliveTime and closes it when no answer comes within
	// KeepaliveTimeout, so the sessions of a client whose host vanished
	// (no FIN, no RST) end instead of living on the agent's keepalives.
	KeepaliveTime    time.Duration
	KeepaliveTimeout time.Duration
}

// Default limits.
const (
	DefaultMaxConns           = 4096
	DefaultMaxConnsPerClient  = 256
	DefaultMaxStreams         = 32768
	DefaultMaxStreamsPerConn  = 4096
	DefaultMaxSessionsPerConn = 1024
	DefaultHandshakeTimeout   = 10 * time.Second
	DefaultKeepaliveMinTime   = 5 * time.Second
	DefaultKeepaliveTime      = time.Minute
	DefaultKeepaliveTimeout   = 20 * time.Second
)

// DefaultLimits are the limits of an agent that sets none.
func DefaultLimits() Limits {
	return Limits{
		MaxConns: DefaultMaxConns, MaxConnsPerClient: DefaultMaxConnsPerClient, MaxStreams: DefaultMaxStreams,
		MaxStreamsPerConn: DefaultMaxStreamsPerConn, MaxSessionsPerConn: DefaultMaxSessionsPerConn,
		HandshakeTimeout: DefaultHandshakeTimeout,
		KeepaliveMinTime: DefaultKeepaliveMinTime, KeepaliveTime: DefaultKeepaliveTime, KeepaliveTimeout: DefaultKeepaliveTimeout,
	}
}

// withDefaults fills the zero (or negative) fields.
func (l Limits) withDefaults() Limits {
	d := DefaultLimits()
	orDefault(&l.MaxConns, d.MaxConns)
	orDefault(&l.MaxConnsPerClient, d.MaxConnsPerClient)
	orDefault(&l.MaxStreams, d.MaxStreams)
	orDefault(&l.MaxStreamsPerConn, d.MaxStreamsPerConn)
	orDefault(&l.MaxSessionsPerConn, d.MaxSessionsPerConn)
	orDefault(&l.HandshakeTimeout, d.HandshakeTimeout)
	orDefault(&l.KeepaliveMinTime, d.KeepaliveMinTime)
	orDefault(&l.KeepaliveTime, d.KeepaliveTime)
	orDefault(&l.KeepaliveTimeout, d.KeepaliveTimeout)
	return l
}

// orDefault sets *v to d unless it is positive.
func orDefault[T int | time.Duration](v *T, d T) {
	if *v <= 0 {
		*v = d
	}
}

// sessionOpenMethod is the stream that is a session.
const sessionOpenMethod = "/beacon.v1.Session/Open"

// streamHeadroom: HTTP/2's MaxConcurrentStreams sits this far above
// MaxStreamsPerConn, so that a client past the limit hears the error
// naming it rather than waiting, unanswered, for a stream slot; the
// transport's limit stays as the bound for a client that ignores errors.
const streamHeadroom = 64

// limiter enforces Limits on calls: per connection, and agent-wide for
// each kind of listener.
type limiter struct {
	Limits
	network, local atomic.Int64 // calls in flight on TCP connections, on the unix socket's
}

// serverOptions are the gRPC options that enforce the limits.
func (l *limiter) serverOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.MaxConcurrentStreams(uint32(l.MaxStreamsPerConn + streamHeadroom)),
		grpc.ConnectionTimeout(l.HandshakeTimeout),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: l.KeepaliveMinTime, PermitWithoutStream: true}),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: l.KeepaliveTime, Timeout: l.KeepaliveTimeout}),
		grpc.StatsHandler(connTagger{l}),
		// Calls run on reused goroutines whose stacks have already grown
		// through the interceptor chain and etcd's client: a goroutine per
		// call spent 7% of the agent's CPU in a lock handoff benchmark
		// growing stacks. Calls beyond the workers get a goroutine each,
		// as without the option, so a long wait never queues another.
		grpc.NumStreamWorkers(streamWorkers),
	}
}

// streamWorkers is the gRPC server's pool of call goroutines; an idle one
// costs its stack (a few KiB to tens of KiB).
const streamWorkers = 64

// connCounts are one connection's calls in flight, and the agent-wide
// count of its kind of listener.
type connCounts struct {
	streams  atomic.Int64
	sessions atomic.Int64
	agent    *atomic.Int64
	local    bool // on the unix socket
}

type connKey struct{}

// connTagger gives every connection its counts; the context of every
// call on the connection derives from the one TagConn returns.
type connTagger struct{ l *limiter }

func (t connTagger) TagConn(ctx context.Context, info *stats.ConnTagInfo) context.Context {
	c := &connCounts{agent: &t.l.network}
	if info != nil && info.LocalAddr != nil && info.LocalAddr.Network() == "unix" {
		c.agent, c.local = &t.l.local, true
	}
	return context.WithValue(ctx, connKey{}, c)
}
func (connTagger) HandleConn(context.Context, stats.ConnStats)                     {}
func (connTagger) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context { return ctx }
func (connTagger) HandleRPC(context.Context, stats.RPCStats)                       {}

// admit counts a call against its connection's limits and the agent's;
// release undoes it. The connection's are checked first, so that a client
// over its own share hears of that, not of the agent's.
func (l *limiter) admit(ctx context.Context, method string) (release func(), err error) {
	c, _ := ctx.Value(connKey{}).(*connCounts)
	if c == nil {
		return func() {}, nil
	}
	if n := c.streams.Add(1); n > int64(l.MaxStreamsPerConn) {
		c.streams.Add(-1)
		return nil, limitError(ErrTooManyStreams, fmt.Sprintf(
			"this connection has %d calls in flight, its limit (max-streams-per-connection %d)", l.MaxStreamsPerConn, l.MaxStreamsPerConn))
	}
	if n := c.agent.Add(1); n > int64(l.MaxStreams) {
		c.agent.Add(-1)
		c.streams.Add(-1)
		where := "this agent has"
		if c.local {
			where = "this agent's unix socket has"
		}
		return nil, limitError(ErrTooManyAgentStreams, fmt.Sprintf(
			"%s %d calls in flight, its limit (max-streams %d)", where, l.MaxStreams, l.MaxStreams))
	}
	if method != sessionOpenMethod {
		return func() { c.agent.Add(-1); c.streams.Add(-1) }, nil
	}
	if n := c.sessions.Add(1); n > int64(l.MaxSessionsPerConn) {
		c.sessions.Add(-1)
		c.agent.Add(-1)
		c.streams.Add(-1)
		return nil, limitError(ErrTooManySessions, fmt.Sprintf(
			"this connection has %d sessions open, its limit (max-sessions-per-connection %d)", l.MaxSessionsPerConn, l.MaxSessionsPerConn))
	}
	return func() { c.sessions.Add(-1); c.agent.Add(-1); c.streams.Add(-1) }, nil
}

func (l *limiter) unaryInterceptor(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	release, err := l.admit(ctx, info.FullMethod)
	if err != nil {
		return nil, err
	}
	defer release()
	return h(ctx, req)
}

func (l *limiter) streamInterceptor(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	release, err := l.admit(ss.Context(), info.FullMethod)
	if err != nil {
		return err
	}
	defer release()
	return h(srv, ss)
}
