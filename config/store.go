// Package config is beacon's configuration store: keys under
// <namespace>config/ in etcd, read and written with revisions
// (compare-and-swap on the mod revision), watched as a snapshot followed by
// ordered changes, and rendered into files with Renderer.
package config

import (
	"context"
	"strings"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Entry is one key and its value, with etcd's revisions of it.
type Entry struct {
	Key            string // relative to the config namespace: "app/db/host"
	Value          []byte
	CreateRevision int64
	ModRevision    int64 // the revision of the last put (or of the delete, in a Change)
	Version        int64 // puts since the key was created
}

// Store reads and writes the config keys in etcd. It is safe for
// concurrent use.
type Store struct {
	cli  *clientv3.Client
	root string // "/beacon/config/"
}

// NewStore returns the store of the keys under namespace+"config/".
func NewStore(cli *clientv3.Client, namespace string) *Store {
	if !strings.HasSuffix(namespace, "/") {
		namespace += "/"
	}
	return &Store{cli: cli, root: namespace + "config/"}
}

// WriteOption conditions a Put or a Delete.
type WriteOption func(*writeOptions)

type writeOptions struct {
	ifRev int64
	cas   bool
}

// IfRevision makes a write happen only if the key's mod revision is rev
// (0: only if the key does not exist); otherwise it fails with a
// *RevisionError (errors.Is ErrRevisionMismatch).
func IfRevision(rev int64) WriteOption {
	return func(o *writeOptions) { o.ifRev, o.cas = rev, true }
}

// Get reads a key; the error wraps ErrNotFound if there is none. rev is
// the store's revision at the read.
func (s *Store) Get(ctx context.Context, key string) (e Entry, rev int64, err error) {
	if err := ValidateKey("key", key); err != nil {
		return Entry{}, 0, err
	}
	resp, err := s.cli.Get(ctx, s.root+key)
	if err != nil {
		return Entry{}, 0, err
	}
	if len(resp.Kvs) == 0 {
		return Entry{}, resp.Header.Revision, &notFound{key}
	}
	return s.entry(resp.Kvs[0].Key, resp.Kvs[0].Value, resp.Kvs[0].CreateRevision, resp.Kvs[0].ModRevision, resp.Kvs[0].Version),
		resp.Header.Revision, nil
}

// Put writes a key and returns its new mod revision.
func (s *Store) Put(ctx context.Context, key string, value []byte, opts ...WriteOption) (int64, error) {
	if err := ValidateKey("key", key); err != nil {
		return 0, err
	}
	if err := ValidateValue("value", value); err != nil {
		return 0, err
	}
	o := writeOpts(opts)
	if err := validRevision("if_revision", o.ifRev); err != nil {
		return 0, err
	}
	put := clientv3.OpPut(s.root+key, string(value))
	if !o.cas {
		resp, err := s.cli.Do(ctx, put)
		if err != nil {
			return 0, err
		}
		return resp.Put().Header.Revision, nil
	}
	resp, err := s.cas(ctx, key, o.ifRev, put)
	if err != nil {
		return 0, err
	}
	return resp.Header.Revision, s.mismatch(resp, "put", key, o.ifRev)
}

// Delete removes a key. deleted is false if there was none; rev is the
// store's revision after the delete.
func (s *Store) Delete(ctx context.Context, key string, opts ...WriteOption) (deleted bool, rev int64, err error) {
	if err := ValidateKey("key", key); err != nil {
		return false, 0, err
	}
	o := writeOpts(opts)
	if err := validRevision("if_revision", o.ifRev); err != nil {
		return false, 0, err
	}
	del := clientv3.OpDelete(s.root + key)
	if !o.cas {
		resp, err := s.cli.Do(ctx, del)
		if err != nil {
			return false, 0, err
		}
		return resp.Del().Deleted > 0, resp.Del().Header.Revision, nil
	}
	resp, err := s.cas(ctx, key, o.ifRev, del)
	if err != nil {
		return false, 0, err
	}
	if err := s.mismatch(resp, "delete", key, o.ifRev); err != nil {
		return false, resp.Header.Revision, err
	}
	return resp.Responses[0].GetResponseDeleteRange().Deleted > 0, resp.Header.Revision, nil
}

// cas runs op only if the key's mod revision is want; otherwise the
// transaction reads the key, so that the error can say where it is. A
// missing key has mod revision 0 in etcd's comparisons.
func (s *Store) cas(ctx context.Context, key string, want int64, op clientv3.Op) (*clientv3.TxnResponse, error) {
	k := s.root + key
	return s.cli.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(k), "=", want)).
		Then(op).Else(clientv3.OpGet(k, clientv3.WithKeysOnly())).Commit()
}

func (s *Store) mismatch(resp *clientv3.TxnResponse, op, key string, want int64) error {
	if resp.Succeeded {
		return nil
	}
	var cur int64
	if kvs := resp.Responses[0].GetResponseRange().Kvs; len(kvs) > 0 {
		cur = kvs[0].ModRevision
	}
	return &RevisionError{Key: key, Want: want, Current: cur, operator: op}
}

// ListOption tunes List.
type ListOption func(*listOptions)

type listOptions struct {
	keysOnly bool
	limit    int64
}

// KeysOnly leaves the values out of a listing.
func KeysOnly() ListOption { return func(o *listOptions) { o.keysOnly = true } }

// Limit returns at most n entries (0: all).
func Limit(n int64) ListOption { return func(o *listOptions) { o.limit = n } }

// List reads the keys starting with prefix, in key order, at one revision.
// more says whether the limit left some out.
func (s *Store) List(ctx context.Context, prefix string, opts ...ListOption) (entries []Entry, rev int64, more bool, err error) {
	if err := ValidatePrefix("prefix", prefix); err != nil {
		return nil, 0, false, err
	}
	o := &listOptions{}
	for _, opt := range opts {
		opt(o)
	}
	if o.limit < 0 {
		return nil, 0, false, &FieldError{Field: "limit", Msg: "must not be negative"}
	}
	ops := []clientv3.OpOption{clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend)}
	if o.keysOnly {
		ops = append(ops, clientv3.WithKeysOnly())
	}
	if o.limit > 0 {
		ops = append(ops, clientv3.WithLimit(o.limit))
	}
	resp, err := s.cli.Get(ctx, s.root+prefix, ops...)
	if err != nil {
		return nil, 0, false, err
	}
	for _, kv := range resp.Kvs {
		entries = append(entries, s.entry(kv.Key, kv.Value, kv.CreateRevision, kv.ModRevision, kv.Version))
	}
	return entries, resp.Header.Revision, resp.More, nil
}

func (s *Store) entry(k, v []byte, create, mod, version int64) Entry {
	return Entry{Key: strings.TrimPrefix(string(k), s.root), Value: v, CreateRevision: create, ModRevision: mod, Version: version}
}

func writeOpts(opts []WriteOption) *writeOptions {
	o := &writeOptions{}
	for _, opt := range opts {
		opt(o)
	}
	return o
}
