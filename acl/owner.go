package acl

import "context"

// SessionOwner names whose share of the agent's sessions a call's session
// counts against (session.WithOwner): its token's accessor id (public;
// never the secret). "" means no share of its own, only the agent-wide
// max-sessions: with ACLs off (every local client is alike), on the
// owner-only unix socket (the host's operator), and for the management
// token (the operator's, made by bootstrap, which may revoke any other
// token anyway). A call without a valid token never gets this far: the
// gate refused it.
func (g *Gate) SessionOwner(ctx context.Context) string {
	if !g.Enabled() || fromOperatorSocket(ctx) {
		return ""
	}
	a := g.auth.Load()
	secret := tokenFromContext(ctx)
	if a == nil || secret == "" {
		return ""
	}
	tok, _, err := a.cache.Lookup(secret)
	if err != nil || tok.Management {
		return ""
	}
	return tok.AccessorID
}
