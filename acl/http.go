package acl

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"

	"github.com/beaconhq/beacon/internal/rpcerr"
	"google.golang.org/grpc/codes"
)

// Operator names of the agent's HTTP endpoints.
const (
	OperatorMetrics = "metrics" // GET /metrics
	OperatorDebug   = "debug"   // /debug/pprof, with enable-debug
)

// HTTP is the gate of one HTTP endpoint: with ACLs on, a request needs
// a token (`Authorization: Bearer <secret>`, or `X-Beacon-Token`) whose
// rules grant need, as an API call would; /metrics names every queue and
// service this agent follows, and a profile tells much more. Without a
// token the answer is 401, with one that does not grant need 403, and
// 503 until the tokens are loaded, each with a JSON body whose error
// names what is missing. With ACLs off, next serves every request.
func (g *Gate) HTTP(need Need, next http.Handler) http.Handler {
	if !g.Enabled() {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a := g.auth.Load()
		if a == nil {
			httpRefuse(w, ErrNotLoaded)
			return
		}
		if err := a.AuthorizeCurrent(r.Context(), tokenOfRequest(r), need); err != nil {
			httpRefuse(w, err)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// tokenOfRequest is the secret a request brings, read as tokenFromContext
// reads a call's metadata.
func tokenOfRequest(r *http.Request) string {
	if scheme, secret, ok := strings.Cut(strings.TrimSpace(r.Header.Get("Authorization")), " "); ok && strings.EqualFold(scheme, "bearer") {
		return strings.TrimSpace(secret)
	}
	return strings.TrimSpace(r.Header.Get(MetadataToken))
}

// httpRefuse answers err with the HTTP status of its gRPC code.
func httpRefuse(w http.ResponseWriter, err error) {
	code := http.StatusForbidden
	var coded rpcerr.Coded
	if errors.As(err, &coded) {
		switch coded.GRPCCode() {
		case codes.Unauthenticated:
			code = http.StatusUnauthorized
			w.Header().Set("WWW-Authenticate", `Bearer realm="beacon"`)
		case codes.Unavailable:
			code = http.StatusServiceUnavailable
		}
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": err.Error()})
}
