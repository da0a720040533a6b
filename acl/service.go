package acl

import (
	"context"
	"time"

	"github.com/beaconhq/beacon/api/beaconpb"
	"github.com/beaconhq/beacon/internal/rpcerr"
)

// enforceWait bounds how long a token call waits for this agent's cache to
// see its own write (milliseconds on a healthy member).
const enforceWait = 5 * time.Second

// Service is the ACL gRPC service. Who may call it is the Gate's concern
// (operator:acl, and Bootstrap only from the socket or a certificate).
type Service struct {
	beaconpb.UnimplementedACLServer
	enabled bool
	store   *Store
	cache   *Cache
}

// NewService serves the tokens of store; cache is the agent's (nil with
// ACLs off: then every call is FAILED_PRECONDITION, so that no token is
// made on a cluster that does not enforce them by a caller nothing
// checked).
func NewService(enabled bool, store *Store, cache *Cache) *Service {
	return &Service{enabled: enabled && cache != nil, store: store, cache: cache}
}

// Bootstrap makes the management token, once per cluster.
func (s *Service) Bootstrap(ctx context.Context, _ *beaconpb.ACLBootstrapRequest) (*beaconpb.ACLTokenSecret, error) {
	if !s.enabled {
		return nil, rpcerr.From(ErrACLDisabled)
	}
	tok, secret, rev, err := s.store.Bootstrap(ctx)
	if err != nil {
		return nil, rpcerr.From(err)
	}
	// The secret is answered even if the cache is slow: it cannot be shown
	// again, and the token is enforced as soon as the watch delivers it.
	_ = s.enforced(ctx, rev)
	return &beaconpb.ACLTokenSecret{Token: tok.PB(), Secret: secret}, nil
}

// TokenCreate makes a token.
func (s *Service) TokenCreate(ctx context.Context, req *beaconpb.ACLTokenCreateRequest) (*beaconpb.ACLTokenSecret, error) {
	if !s.enabled {
		return nil, rpcerr.From(ErrACLDisabled)
	}
	tok, secret, rev, err := s.store.Create(ctx, req.Rules, req.Description)
	if err != nil {
		return nil, rpcerr.From(err)
	}
	// The secret is answered even if the cache is slow: it cannot be shown
	// again, and the token is enforced as soon as the watch delivers it.
	_ = s.enforced(ctx, rev)
	return &beaconpb.ACLTokenSecret{Token: tok.PB(), Secret: secret}, nil
}

// TokenList lists the tokens without their secrets.
func (s *Service) TokenList(ctx context.Context, _ *beaconpb.ACLTokenListRequest) (*beaconpb.ACLTokenListResponse, error) {
	if !s.enabled {
		return nil, rpcerr.From(ErrACLDisabled)
	}
	toks, err := s.store.List(ctx)
	if err != nil {
		return nil, rpcerr.From(err)
	}
	resp := &beaconpb.ACLTokenListResponse{}
	for _, t := range toks {
		resp.Tokens = append(resp.Tokens, t.PB())
	}
	return resp, nil
}

// TokenRevoke deletes a token; it answers once this agent refuses it.
func (s *Service) TokenRevoke(ctx context.Context, req *beaconpb.ACLTokenRevokeRequest) (*beaconpb.ACLTokenRevokeResponse, error) {
	if !s.enabled {
		return nil, rpcerr.From(ErrACLDisabled)
	}
	rev, err := s.store.Revoke(ctx, req.AccessorId)
	if err != nil {
		return nil, rpcerr.From(err)
	}
	return &beaconpb.ACLTokenRevokeResponse{}, s.enforced(ctx, rev)
}

// enforced waits until this agent's cache reflects rev. The write is
// done either way; a timeout says so rather than failing silently.
func (s *Service) enforced(ctx context.Context, rev int64) error {
	wctx, cancel := context.WithTimeout(ctx, enforceWait)
	defer cancel()
	if err := s.cache.WaitRevision(wctx, rev); err != nil {
		return rpcerr.From(rpcerr.Wrapf(ErrNotLoaded, "the change is written (revision %d) but this agent's token cache had not seen it after %v: %v",
			rev, enforceWait, err))
	}
	return nil
}
