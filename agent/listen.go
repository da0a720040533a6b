package agent

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/beaconhq/beacon/apiserver"
	"go.uber.org/zap"
)

// listenAPI binds the API's TCP address and unix socket. Plain, apiserver
// binds both. With TLS, the agent binds them itself: the TCP listener
// hands gRPC connections that are mutual TLS, while the unix socket,
// owner-only, stays plain on the same server (one server serves both, so
// TLS cannot be a server-wide option of it).
func (a *Agent) listenAPI() error {
	cfg := a.cfg
	if cfg.TLS == nil {
		if err := a.api.Listen(cfg.APIAddr, cfg.APISocket); err != nil {
			var oe *net.OpError
			if errors.As(err, &oe) && errors.Is(err, syscall.EADDRINUSE) {
				return portError("api-addr", cfg.APIAddr, err)
			}
			return err
		}
		a.apiAddr = a.api.Addr()
		return nil
	}
	tc, err := cfg.apiTLS()
	if err != nil {
		return err
	}
	l, err := net.Listen("tcp", cfg.APIAddr)
	if err != nil {
		return portError("api-addr", cfg.APIAddr, err)
	}
	a.apiAddr = l.Addr().String()
	// The connection bounds go under TLS: a connection over them is closed
	// before its handshake costs anything.
	a.apiLis = append(a.apiLis, &refusalLogger{Listener: tls.NewListener(a.api.LimitListener(l), tc), lg: a.lg.Named("api")})
	if cfg.APISocket == "" {
		return nil
	}
	if err := apiserver.RemoveStaleSocket(cfg.APISocket); err != nil {
		l.Close()
		return err
	}
	u, err := net.Listen("unix", cfg.APISocket)
	if err != nil {
		l.Close()
		return fmt.Errorf("api-socket %s: %w", cfg.APISocket, err)
	}
	_ = os.Chmod(cfg.APISocket, 0o600) // the socket is for this host's own operator
	a.apiLis = append(a.apiLis, a.api.LimitListener(u))
	return nil
}

// serveAPI serves the listeners listenAPI bound itself (with TLS).
func (a *Agent) serveAPI() {
	for _, l := range a.apiLis {
		go func(l net.Listener) { _ = a.api.GRPC().Serve(l) }(l)
	}
}

// closeAPIListeners closes what listenAPI bound itself, once the server
// stopped (or never served), and removes the socket file.
func (a *Agent) closeAPIListeners() {
	for _, l := range a.apiLis {
		l.Close()
	}
	if len(a.apiLis) > 1 && a.cfg.APISocket != "" {
		_ = os.Remove(a.cfg.APISocket)
	}
	a.apiLis = nil
}

// refusalLogger logs the TLS handshakes the API's listener refuses (no
// certificate, another CA's, a plain client), at most one line a second:
// gRPC, which runs the handshake on its first read, would only drop them.
type refusalLogger struct {
	net.Listener
	lg   *zap.Logger
	last atomic.Int64 // unix nanoseconds of the last line
}

func (l *refusalLogger) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &refusalConn{Conn: c.(*tls.Conn), l: l}, nil
}

type refusalConn struct {
	*tls.Conn
	l    *refusalLogger
	once sync.Once
}

func (c *refusalConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	// A bare EOF is a port probe that never spoke TLS: not worth a line.
	if err != nil && !errors.Is(err, io.EOF) && !c.ConnectionState().HandshakeComplete {
		c.once.Do(func() {
			now := time.Now().UnixNano()
			if last := c.l.last.Load(); now-last > int64(time.Second) && c.l.last.CompareAndSwap(last, now) {
				c.l.lg.Warn("refused a TLS connection to the API", zap.String("from", c.RemoteAddr().String()), zap.Error(err))
			}
		})
	}
	return n, err
}
