package agent

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
	"time"
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
	a.apiLis = append(a.apiLis, tls.NewListener(l, tc))
	if cfg.APISocket == "" {
		return nil
	}
	if err := removeStaleSocket(cfg.APISocket); err != nil {
		l.Close()
		return err
	}
	u, err := net.Listen("unix", cfg.APISocket)
	if err != nil {
		l.Close()
		return fmt.Errorf("api-socket %s: %w", cfg.APISocket, err)
	}
	_ = os.Chmod(cfg.APISocket, 0o600) // the socket is for this host's own operator
	a.apiLis = append(a.apiLis, u)
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

// removeStaleSocket removes a socket file left by a crashed agent, and
// refuses when a live agent still answers on it.
func removeStaleSocket(path string) error {
	if _, err := os.Stat(path); err != nil {
		return nil
	}
	if c, err := net.DialTimeout("unix", path, 500*time.Millisecond); err == nil {
		c.Close()
		return fmt.Errorf("api-socket %s: another agent is listening on it", path)
	}
	return os.Remove(path)
}
