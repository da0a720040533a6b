package acl

import (
	"context"
	"errors"

	"github.com/beaconhq/beacon/internal/rpcerr"
)

// Authorizer answers whether a token may do what a call needs, from the
// cache alone.
type Authorizer struct {
	cache *Cache
}

// NewAuthorizer authorises from the tokens in cache.
func NewAuthorizer(cache *Cache) *Authorizer { return &Authorizer{cache: cache} }

// Authorize answers nil when the token of secret grants every need;
// ErrNoToken without a secret, ErrUnknownToken for a secret no token has,
// and ErrPermissionDenied naming the first need that is not granted. No
// need: any valid token will do (Session.Open).
func (a *Authorizer) Authorize(secret string, needs ...Need) error {
	if secret == "" {
		return ErrNoToken
	}
	tok, pol, err := a.cache.Lookup(secret)
	if err != nil {
		return err
	}
	for _, n := range needs {
		if !pol.Allows(n) {
			return denied(tok, n)
		}
	}
	return nil
}

// AuthorizeCurrent is Authorize, but a secret this agent's cache does not
// know is looked for again once the cache has caught up with etcd: a
// token created through another agent works here as soon as its create
// answered, not once this agent's watch delivered it (a test using a
// fresh token on a proxy was refused "not known" under load).
func (a *Authorizer) AuthorizeCurrent(ctx context.Context, secret string, needs ...Need) error {
	err := a.Authorize(secret, needs...)
	if errors.Is(err, ErrUnknownToken) && a.cache.CatchUp(ctx) == nil {
		err = a.Authorize(secret, needs...)
	}
	return err
}

// Policy is the policy of the token of secret.
func (a *Authorizer) Policy(secret string) (*Policy, error) {
	if secret == "" {
		return nil, ErrNoToken
	}
	_, pol, err := a.cache.Lookup(secret)
	return pol, err
}

func denied(tok *Token, n Need) error {
	return rpcerr.Wrapf(ErrPermissionDenied, "permission denied: this call needs %s, which token %s does not grant", n, tok.AccessorID)
}
