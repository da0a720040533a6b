package agent

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"log"
	"net"
	"net/http"
	"net/http/pprof"
	"runtime"
	"time"

	"github.com/beaconhq/beacon/acl"
	"github.com/beaconhq/beacon/version"
	"go.uber.org/zap"
)

// httpHandler serves /health, /ready, /metrics and /version.
func (a *Agent) httpHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"status": "alive", "name": a.cfg.Name})
	})
	mux.HandleFunc("GET /ready", func(w http.ResponseWriter, r *http.Request) {
		if err := a.ready(r.Context()); err != nil {
			writeJSON(w, http.StatusServiceUnavailable, map[string]any{"status": "not ready", "error": err.Error()})
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"status": "ready", "role": a.node.Role()})
	})
	// With ACLs on, /metrics and the profiler need a token like any API
	// call (operator:metrics:read, operator:debug:read): their labels
	// name this agent's queues and services. /health, /ready and
	// /version stay open for load balancers and probes.
	mux.Handle("GET /metrics", a.gate.HTTP(operatorRead(acl.OperatorMetrics), a.metricsHandler()))
	// Go's profiler, for operators chasing CPU or memory, only when
	// switched on: a profile or a goroutine dump tells an attacker much.
	if a.cfg.EnableDebug {
		debug := func(h http.HandlerFunc) http.Handler { return a.gate.HTTP(operatorRead(acl.OperatorDebug), h) }
		mux.Handle("/debug/pprof/", debug(pprof.Index))
		mux.Handle("/debug/pprof/profile", debug(pprof.Profile))
		mux.Handle("/debug/pprof/trace", debug(pprof.Trace))
	}
	mux.HandleFunc("GET /version", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"version": version.String(), "go": runtime.Version()})
	})
	return mux
}

func operatorRead(name string) acl.Need {
	return acl.Need{Kind: acl.KindOperator, Name: name, Access: acl.AccessRead}
}

// ready is true when the cluster answers a linearizable read, which needs
// a leader and a quorum behind it.
func (a *Agent) ready(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	_, err := a.node.Client().Get(ctx, a.cfg.Namespace+"ready")
	return err
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func (a *Agent) listenHTTP() (net.Listener, error) {
	l, err := net.Listen("tcp", a.cfg.HTTPAddr)
	if err != nil {
		return nil, portError("http-addr", a.cfg.HTTPAddr, err)
	}
	if a.cfg.TLS == nil {
		return l, nil
	}
	tc, err := a.cfg.httpTLS()
	if err != nil {
		l.Close()
		return nil, err
	}
	return tls.NewListener(l, tc), nil
}

// httpErrorLog puts net/http's own messages in the agent's log at warn.
func httpErrorLog(lg *zap.Logger) *log.Logger {
	l, err := zap.NewStdLogAt(lg, zap.WarnLevel)
	if err != nil {
		return zap.NewStdLog(lg)
	}
	return l
}
