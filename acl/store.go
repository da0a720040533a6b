package acl

import (
	"context"
	"sort"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/beaconhq/beacon/internal/rpcerr"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// MaxDescriptionLen bounds a token's description.
const MaxDescriptionLen = 256

// Store keeps the tokens in etcd: <namespace>acl/tokens/<accessor id>,
// and <namespace>acl/bootstrap once the management token was made.
type Store struct {
	cli *clientv3.Client
	ns  string
}

// NewStore is the token store under namespace ("/beacon/").
func NewStore(cli *clientv3.Client, namespace string) *Store {
	return &Store{cli: cli, ns: namespace}
}

// tokensPrefix is where the tokens live in etcd.
func tokensPrefix(namespace string) string { return namespace + "acl/tokens/" }

// bootstrapKey marks the cluster's bootstrap as done; its value is the
// management token's accessor id. Deleting it (as etcd's root user)
// allows one more Bootstrap: the way back from a lost management token.
func bootstrapKey(namespace string) string { return namespace + "acl/bootstrap" }

// Bootstrap makes the management token, once cluster-wide: the marker and
// the token are written in one transaction that requires the marker to be
// absent, so two agents bootstrapping at once make one token.
func (s *Store) Bootstrap(ctx context.Context) (tok *Token, secret string, rev int64, err error) {
	secret, hash := newSecret()
	rules := managementRules()
	tok = &Token{AccessorID: newAccessorID(), SecretHash: hash, Description: "bootstrap management token",
		Created: time.Now().UTC().Truncate(time.Second), Management: true}
	for _, r := range rules {
		tok.Rules = append(tok.Rules, r.String())
	}
	marker := bootstrapKey(s.ns)
	resp, err := s.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(marker), "=", 0)).
		Then(clientv3.OpPut(marker, tok.AccessorID), clientv3.OpPut(tokensPrefix(s.ns)+tok.AccessorID, tok.marshal())).
		Commit()
	if err != nil {
		return nil, "", 0, err
	}
	if !resp.Succeeded {
		return nil, "", 0, ErrBootstrapped
	}
	return tok, secret, resp.Header.Revision, nil
}

// Create makes a token with rules and a description.
func (s *Store) Create(ctx context.Context, rules []string, description string) (tok *Token, secret string, rev int64, err error) {
	parsed, err := ParseRules(rules)
	if err != nil {
		return nil, "", 0, err
	}
	if err := checkDescription(description); err != nil {
		return nil, "", 0, err
	}
	secret, hash := newSecret()
	tok = &Token{AccessorID: newAccessorID(), SecretHash: hash, Description: description,
		Created: time.Now().UTC().Truncate(time.Second)}
	for _, r := range parsed {
		tok.Rules = append(tok.Rules, r.String())
	}
	resp, err := s.cli.Put(ctx, tokensPrefix(s.ns)+tok.AccessorID, tok.marshal())
	if err != nil {
		return nil, "", 0, err
	}
	return tok, secret, resp.Header.Revision, nil
}

// List is every token, in the order they were made.
func (s *Store) List(ctx context.Context) ([]*Token, error) {
	resp, err := s.cli.Get(ctx, tokensPrefix(s.ns), clientv3.WithPrefix())
	if err != nil {
		return nil, err
	}
	kvs := resp.Kvs
	sort.SliceStable(kvs, func(i, j int) bool { return kvs[i].CreateRevision < kvs[j].CreateRevision })
	toks := make([]*Token, 0, len(kvs))
	for _, kv := range kvs {
		if t, err := unmarshalToken(kv.Value); err == nil {
			toks = append(toks, t)
		}
	}
	return toks, nil
}

// Revoke deletes the token named by its accessor id.
func (s *Store) Revoke(ctx context.Context, accessorID string) (rev int64, err error) {
	if !validAccessorID(accessorID) {
		return 0, rpcerr.Wrapf(ErrInvalidArgument, "accessor id %q is not one (%d hex digits, as `beacon acl token list` shows)",
			accessorID, 2*accessorBytes)
	}
	key := tokensPrefix(s.ns) + accessorID
	resp, err := s.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(key), ">", 0)).
		Then(clientv3.OpDelete(key)).
		Commit()
	if err != nil {
		return 0, err
	}
	if !resp.Succeeded {
		return 0, rpcerr.Wrapf(ErrTokenNotFound, "no token has accessor id %s", accessorID)
	}
	return resp.Header.Revision, nil
}

func checkDescription(d string) error {
	switch {
	case len(d) > MaxDescriptionLen:
		return rpcerr.Wrapf(ErrInvalidArgument, "description: %d bytes, more than %d", len(d), MaxDescriptionLen)
	case !utf8.ValidString(d):
		return rpcerr.Wrapf(ErrInvalidArgument, "description: not valid UTF-8")
	case strings.IndexFunc(d, func(r rune) bool { return !unicode.IsPrint(r) }) >= 0:
		return rpcerr.Wrapf(ErrInvalidArgument, "description: holds a control character")
	}
	return nil
}
