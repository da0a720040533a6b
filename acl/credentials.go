package acl

import (
	"context"

	"google.golang.org/grpc"
)

// Bearer is a client's per-call credential: it sends the secret as
// `authorization: Bearer <secret>` on every call of a connection
// (grpc.WithPerRPCCredentials(acl.Bearer(secret)), or DialOption).
type Bearer string

// GetRequestMetadata implements credentials.PerRPCCredentials.
func (t Bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	if t == "" {
		return nil, nil
	}
	return map[string]string{MetadataAuthorization: "Bearer " + string(t)}, nil
}

// RequireTransportSecurity is false: the agent's API is on loopback or a
// unix socket when it is not TLS, and a token must work on both.
func (Bearer) RequireTransportSecurity() bool { return false }

// DialOption sends the token on every call; none for an empty token.
func (t Bearer) DialOption() []grpc.DialOption {
	if t == "" {
		return nil
	}
	return []grpc.DialOption{grpc.WithPerRPCCredentials(t)}
}
