package acl

import (
	"context"
	"crypto/tls"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/beaconhq/beacon/acl/bearer"
	"github.com/beaconhq/beacon/api/beaconpb"
	"github.com/beaconhq/beacon/internal/peercred"
	"github.com/beaconhq/beacon/internal/rpcerr"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
)

// Metadata keys a client may send its token in (package bearer sends it).
const (
	MetadataAuthorization = bearer.MetadataAuthorization // "Bearer <secret>"
	MetadataToken         = bearer.MetadataToken
)

// Gate is the API's ACL check, as gRPC interceptors. The API server is
// built before etcd is up, so the gate is made first (NewGate, its
// interceptors in the server's chain) and given its authoriser once the
// tokens are loaded (Attach); until then a call with ACLs on is
// UNAVAILABLE. With ACLs off the interceptors pass every call.
type Gate struct {
	enabled bool
	ns      string
	auth    atomic.Pointer[Authorizer]
}

// NewGate is the gate of an agent with ACLs on (enabled) or off, whose
// keys live under namespace ("/beacon/").
func NewGate(enabled bool, namespace string) *Gate {
	return &Gate{enabled: enabled, ns: namespace}
}

// Enabled says whether ACLs are on.
func (g *Gate) Enabled() bool { return g != nil && g.enabled }

// Attach gives the gate its authoriser.
func (g *Gate) Attach(a *Authorizer) { g.auth.Store(a) }

// Unary is the unary interceptor.
func (g *Gate) Unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if !g.Enabled() {
		return handler(ctx, req)
	}
	m := methodOf(info.FullMethod)
	if err := g.check(ctx, m, req, true); err != nil {
		return nil, err
	}
	if pol := g.listFilter(ctx, m, req); pol != nil {
		if list, ok := req.(*beaconpb.ListRequest); ok {
			return listVisible(ctx, list, handler, pol)
		}
	}
	return handler(ctx, req)
}

// Stream is the stream interceptor. A method whose request says what it
// needs (Registry.Watch, Lock.Watch, Config.Watch...) is checked on its
// first message, before the handler sees it.
func (g *Gate) Stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	if !g.Enabled() {
		return handler(srv, ss)
	}
	m := methodOf(info.FullMethod)
	if m.how != byRequest {
		if err := g.check(ss.Context(), m, nil, false); err != nil {
			return err
		}
		return handler(srv, ss)
	}
	// The token is checked now; what it needs, on the first message.
	if err := g.check(ss.Context(), method{how: anyToken}, nil, false); err != nil {
		return err
	}
	return handler(srv, &checkedStream{ServerStream: ss, gate: g, m: m})
}

// checkedStream authorises the first message a handler receives, and
// filters what it sends when that message asked for every service.
type checkedStream struct {
	grpc.ServerStream
	gate   *Gate
	m      method
	once   sync.Once
	err    error
	filter atomic.Pointer[Policy]
}

func (s *checkedStream) RecvMsg(msg any) error {
	if err := s.ServerStream.RecvMsg(msg); err != nil {
		return err
	}
	s.once.Do(func() {
		if s.err = s.gate.check(s.Context(), s.m, msg, true); s.err == nil {
			s.filter.Store(s.gate.listFilter(s.Context(), s.m, msg))
		}
	})
	return s.err
}

func (s *checkedStream) SendMsg(msg any) error {
	if pol := s.filter.Load(); pol != nil {
		filtered, send := filterWatch(pol, msg)
		if !send {
			return nil
		}
		msg = filtered
	}
	return s.ServerStream.SendMsg(msg)
}

// check answers nil when the caller may make the call.
func (g *Gate) check(ctx context.Context, m method, req any, haveReq bool) error {
	if m.how == open || fromOperatorSocket(ctx) {
		return nil
	}
	if m.how == bootstrap {
		if verifiedClientCert(ctx) {
			return nil
		}
		return rpcerr.From(rpcerr.Wrapf(ErrPermissionDenied,
			"ACL bootstrap only through the agent's unix socket (--agent unix:<data-dir>/beacon.sock), or with a client certificate of the cluster's CA"))
	}
	a := g.auth.Load()
	if a == nil {
		return rpcerr.From(ErrNotLoaded)
	}
	var needs []Need
	if m.how == byRequest && haveReq {
		needs = m.needsOf(g.ns, req)
	}
	return rpcerr.From(a.AuthorizeCurrent(ctx, tokenFromContext(ctx), needs...))
}

// fromOperatorSocket: a call on the owner-only unix socket is the
// agent's own operator's (the socket's mode, 0600, is the credential).
func fromOperatorSocket(ctx context.Context) bool { return peercred.OverUnixSocket(ctx) }

// verifiedClientCert: the caller showed a client certificate that the
// agent's TLS listener verified against the cluster's CA.
func verifiedClientCert(ctx context.Context) bool {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return false
	}
	var st tls.ConnectionState
	switch ai := p.AuthInfo.(type) {
	case credentials.TLSInfo: // a server with grpc's own TLS credentials
		st = ai.State
	case ConnAuthInfo: // TLS done by the listener (ConnCredentials)
		st, _ = ai.TLS()
	default:
		return false
	}
	return st.HandshakeComplete && len(st.VerifiedChains) > 0 && len(st.PeerCertificates) > 0
}

// tokenFromContext is the secret a call brings: `authorization: Bearer
// <secret>`, else `x-beacon-token: <secret>`; "" without either.
func tokenFromContext(ctx context.Context) string {
	md, ok := metadata.FromIncomingContext(ctx)
	if !ok {
		return ""
	}
	for _, v := range md.Get(MetadataAuthorization) {
		if scheme, secret, ok := strings.Cut(strings.TrimSpace(v), " "); ok && strings.EqualFold(scheme, "bearer") {
			return strings.TrimSpace(secret)
		}
	}
	for _, v := range md.Get(MetadataToken) {
		if v = strings.TrimSpace(v); v != "" {
			return v
		}
	}
	return ""
}
