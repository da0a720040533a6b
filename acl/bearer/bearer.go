// Package bearer is the client's side of the agent's ACLs: the token a
// client sends with every call. It is apart from package acl so that an
// application (the client SDK, the CLI) does not link the agent's side.
package bearer

import (
	"context"

	"google.golang.org/grpc"
)

// Metadata keys a token may travel in; the agent reads both.
const (
	MetadataAuthorization = "authorization" // "Bearer <secret>"
	MetadataToken         = "x-beacon-token"
)

// EnvToken is the variable the CLI and the SDK read a token from.
const EnvToken = "BEACON_TOKEN"

// Token is a token's secret as a per-call credential: it sends
// `authorization: Bearer <secret>` on every call of a connection.
type Token string

// GetRequestMetadata implements credentials.PerRPCCredentials.
func (t Token) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	if t == "" {
		return nil, nil
	}
	return map[string]string{MetadataAuthorization: "Bearer " + string(t)}, nil
}

// RequireTransportSecurity is false: the agent's API is on loopback or a
// unix socket when it is not TLS, and a token must work on both.
func (Token) RequireTransportSecurity() bool { return false }

// DialOptions send the token on every call; none for an empty token.
func (t Token) DialOptions() []grpc.DialOption {
	if t == "" {
		return nil
	}
	return []grpc.DialOption{grpc.WithPerRPCCredentials(t)}
}
