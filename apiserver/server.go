// Package apiserver is the agent's gRPC server: the interceptor chain
// (Prometheus metrics, logging, the ACL gate, the data quota, limits,
// panic recovery), the standard health service and reflection, on a
// loopback TCP address and a unix socket.
// Services register themselves on GRPC() before Serve.
package apiserver

import (
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"time"

	"github.com/beaconhq/beacon/acl"
	"github.com/beaconhq/beacon/dataquota"
	grpcprom "github.com/grpc-ecosystem/go-grpc-middleware/providers/prometheus"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/logging"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/recovery"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"
)

// Server is the agent's gRPC server and its listeners.
type Server struct {
	grpc   *grpc.Server
	health *health.Server
	lg     *zap.Logger
	lis    []net.Listener
	socket string
	// The connection bounds of the TCP listener and of the unix socket.
	tcpConns, unixConns *ConnLimiter
}

var (
	metricsOnce sync.Once
	metrics     *grpcprom.ServerMetrics
)

// serverMetrics are registered once per process under the beacon_
// namespace: embedded etcd already registers grpc_server_* for its own API.
func serverMetrics() *grpcprom.ServerMetrics {
	metricsOnce.Do(func() {
		metrics = grpcprom.NewServerMetrics(
			grpcprom.WithServerCounterOptions(grpcprom.WithNamespace("beacon")),
			grpcprom.WithServerHandlingTimeHistogram(grpcprom.WithHistogramNamespace("beacon")),
		)
		if err := prometheus.Register(metrics); err != nil {
			var are prometheus.AlreadyRegisteredError
			if errors.As(err, &are) {
				metrics = are.ExistingCollector.(*grpcprom.ServerMetrics)
			}
		}
	})
	return metrics
}

type options struct {
	limits Limits
	gate   *acl.Gate
	quota  *dataquota.Guard
}

// Option configures New.
type Option func(*options)

// WithLimits sets the per-connection limits (zero fields: the defaults).
func WithLimits(l Limits) Option { return func(o *options) { o.limits = l } }

// WithACL puts the ACL gate in the chain: after logging and metrics (a
// refusal is logged and counted), before the limits (a caller without a
// token takes no slot). Without it every call passes, as with ACLs off.
func WithACL(g *acl.Gate) Option { return func(o *options) { o.gate = g } }

// WithDataQuota puts the data quota's guard in the chains, after the ACL
// gate: it marks each call's context with its class, by which the
// guarded etcd client judges what the call writes (see package
// dataquota). Without it nothing is refused by size before etcd's own
// quota.
func WithDataQuota(g *dataquota.Guard) Option { return func(o *options) { o.quota = g } }

// New builds the server. Register services on GRPC(), then Listen and Serve.
func New(lg *zap.Logger, opts ...Option) *Server {
	o := options{limits: DefaultLimits()}
	for _, opt := range opts {
		opt(&o)
	}
	limits := &limiter{Limits: o.limits.withDefaults()}
	gate := o.gate
	if gate == nil {
		gate = acl.NewGate(false, "")
	}
	quota := o.quota
	if quota == nil {
		quota, _ = dataquota.New(100)
	}
	m := serverMetrics()
	lgr := interceptorLogger(lg)
	logOpts := []logging.Option{
		logging.WithLogOnEvents(logging.FinishCall),
		logging.WithLevels(func(c codes.Code) logging.Level {
			switch c {
			// Refusals by the ACL gate and the limits are Debug: a
			// client must not be able to flood the log with them (they
			// are counted in beacon_grpc_server_handled_total).
			case codes.OK, codes.Canceled, codes.NotFound, codes.AlreadyExists, codes.InvalidArgument,
				codes.FailedPrecondition, codes.DeadlineExceeded, codes.Unauthenticated, codes.PermissionDenied,
				codes.ResourceExhausted:
				return logging.LevelDebug
			case codes.Internal, codes.Unknown, codes.DataLoss:
				return logging.LevelError
			}
			return logging.LevelWarn
		}),
	}
	recoverOpt := recovery.WithRecoveryHandler(func(p any) error {
		lg.Error("panic in a gRPC handler", zap.Any("panic", p), zap.StackSkip("stack", 3))
		return status.Error(codes.Internal, "internal error")
	})
	s := grpc.NewServer(append(limits.serverOptions(),
		// Leaves plain and unix connections as they are, and lets the gate
		// see the client certificate a TLS listener verified.
		grpc.Creds(acl.ConnCredentials()),
		grpc.ChainUnaryInterceptor(
			m.UnaryServerInterceptor(),
			logging.UnaryServerInterceptor(lgr, logOpts...),
			gate.Unary,
			quota.Unary,
			limits.unaryInterceptor,
			recovery.UnaryServerInterceptor(recoverOpt),
			contextCodesUnary,
		),
		grpc.ChainStreamInterceptor(
			m.StreamServerInterceptor(),
			logging.StreamServerInterceptor(lgr, logOpts...),
			gate.Stream,
			quota.Stream,
			limits.streamInterceptor,
			recovery.StreamServerInterceptor(recoverOpt),
			contextCodesStream,
		),
	)...)
	hs := health.NewServer()
	healthpb.RegisterHealthServer(s, hs)
	reflection.Register(s)
	return &Server{grpc: s, health: hs, lg: lg,
		tcpConns: newConnLimiter(limits.Limits, true, lg), unixConns: newConnLimiter(limits.Limits, false, lg)}
}

// LimitListener puts the connection bounds on l: the unix socket's if l is
// a unix listener, else the TCP listener's (MaxConns, MaxConnsPerClient).
// Wrap the bare listener, under any TLS, so that a connection over a
// bound is closed before its handshake. Listen does it for what it binds.
func (s *Server) LimitListener(l net.Listener) net.Listener {
	if l.Addr().Network() == "unix" {
		return s.unixConns.Listener(l)
	}
	return s.tcpConns.Listener(l)
}

// GRPC is the server to register services on.
func (s *Server) GRPC() *grpc.Server { return s.grpc }

// Listen binds the TCP address and, unless socket is empty, the unix
// socket. It binds before the cluster starts so that a port in use stops
// the agent before anything else happens.
func (s *Server) Listen(addr, socket string) error {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("api-addr %s: %w", addr, err)
	}
	s.lis = append(s.lis, s.LimitListener(l))
	if socket == "" {
		return nil
	}
	if err := RemoveStaleSocket(socket); err != nil {
		return err
	}
	u, err := net.Listen("unix", socket)
	if err != nil {
		return fmt.Errorf("api-socket %s: %w", socket, err)
	}
	_ = os.Chmod(socket, 0o600) // the socket is for this host's own processes
	s.lis = append(s.lis, s.LimitListener(u))
	s.socket = socket
	return nil
}

// RemoveStaleSocket removes a socket file left by a crashed agent, and
// refuses when a live agent still answers on it (also for the agent's
// own listeners, which it binds itself under TLS).
func RemoveStaleSocket(path string) error {
	if _, err := os.Stat(path); err != nil {
		return nil
	}
	if c, err := net.DialTimeout("unix", path, 500*time.Millisecond); err == nil {
		c.Close()
		return fmt.Errorf("api-socket %s: another agent is listening on it", path)
	}
	return os.Remove(path)
}

// Addr is the bound TCP address.
func (s *Server) Addr() string {
	if len(s.lis) == 0 {
		return ""
	}
	return s.lis[0].Addr().String()
}

// Serve serves on the bound listeners in the background and marks every
// registered service SERVING.
func (s *Server) Serve() {
	s.health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	for name := range s.grpc.GetServiceInfo() {
		s.health.SetServingStatus(name, healthpb.HealthCheckResponse_SERVING)
	}
	for _, l := range s.lis {
		go func(l net.Listener) { _ = s.grpc.Serve(l) }(l)
	}
}

// CloseListeners stops accepting connections and frees the addresses
// (and the socket file); calls on connections already open go on until
// Stop. An agent that is leaving frees its ports before it answers.
func (s *Server) CloseListeners() {
	for _, l := range s.lis {
		l.Close()
	}
	if s.socket != "" {
		_ = os.Remove(s.socket)
	}
}

// Stop marks the server NOT_SERVING, lets calls in flight finish for up to
// d, then closes everything.
func (s *Server) Stop(d time.Duration) {
	s.health.Shutdown()
	done := make(chan struct{})
	go func() { s.grpc.GracefulStop(); close(done) }()
	select {
	case <-done:
	case <-time.After(d):
		s.grpc.Stop()
	}
	s.CloseListeners()
}
