package acl

import (
	"context"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"golang.org/x/sync/singleflight"
)

// Cache holds every token in memory, fed by a watch of the tokens'
// prefix, so that authorising a call never waits on etcd. A revoked
// token is refused once this agent's watch delivered the delete:
// milliseconds on a healthy cluster. While the watch is broken (no
// quorum reachable) the last view keeps answering, and a revoke made
// elsewhere meanwhile takes effect when it resumes.
type Cache struct {
	cli    *clientv3.Client
	prefix string
	lg     *zap.Logger

	mu      sync.RWMutex
	byHash  map[string]*cached
	byKey   map[string]string // etcd key → secret hash
	rev     int64             // the etcd revision the view reflects
	loaded  bool
	changed chan struct{} // closed and replaced on each advance of rev

	cancel context.CancelFunc
	done   chan struct{}

	catchUp singleflight.Group // one CatchUp read in flight, shared
}

type cached struct {
	token  *Token
	policy *Policy
}

// StartCache loads the tokens of namespace and follows them until Close.
// It returns once the first view is loaded, or with ctx's error.
func StartCache(ctx context.Context, cli *clientv3.Client, namespace string, opts ...Option) (*Cache, error) {
	c := &Cache{cli: cli, prefix: tokensPrefix(namespace), lg: zap.NewNop(), byHash: map[string]*cached{},
		byKey: map[string]string{}, changed: make(chan struct{}), done: make(chan struct{})}
	for _, o := range opts {
		o(c)
	}
	rev, err := c.relist(ctx)
	if err != nil {
		return nil, err
	}
	wctx, cancel := context.WithCancel(context.Background())
	c.cancel = cancel
	go c.follow(wctx, rev)
	return c, nil
}

// Close stops the watch.
func (c *Cache) Close() {
	c.cancel()
	<-c.done
}

// Lookup finds the token of a secret.
func (c *Cache) Lookup(secret string) (*Token, *Policy, error) {
	h := HashSecret(secret)
	c.mu.RLock()
	defer c.mu.RUnlock()
	if !c.loaded {
		return nil, nil, ErrNotLoaded
	}
	e, ok := c.byHash[h]
	if !ok {
		return nil, nil, ErrUnknownToken
	}
	return e.token, e.policy, nil
}

// Revision is the etcd revision the cache reflects.
func (c *Cache) Revision() int64 {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.rev
}

// WaitRevision waits until the cache reflects rev (a write of this agent's
// own), so that a token is enforced here once TokenCreate or TokenRevoke
// has answered.
func (c *Cache) WaitRevision(ctx context.Context, rev int64) error {
	for {
		c.mu.RLock()
		cur, ch := c.rev, c.changed
		c.mu.RUnlock()
		if cur >= rev {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// catchUpTimeout bounds CatchUp's read of etcd's revision and the wait
// for the watch to reach it.
const catchUpTimeout = 2 * time.Second

// CatchUp waits until the cache reflects etcd's current revision: a token
// created through another agent a moment ago is known once it returns.
// Callers that come while a read is in flight share it, so secrets no
// token has cost etcd one read at a time, not one each.
func (c *Cache) CatchUp(ctx context.Context) error {
	ch := c.catchUp.DoChan("", func() (any, error) {
		rctx, cancel := context.WithTimeout(context.Background(), catchUpTimeout)
		defer cancel()
		resp, err := c.cli.Get(rctx, c.prefix, clientv3.WithKeysOnly(), clientv3.WithLimit(1))
		if err != nil {
			return nil, err
		}
		return nil, c.WaitRevision(rctx, resp.Header.Revision)
	})
	select {
	case r := <-ch:
		return r.Err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// relist replaces the view with etcd's tokens and answers their revision.
func (c *Cache) relist(ctx context.Context) (int64, error) {
	resp, err := c.cli.Get(ctx, c.prefix, clientv3.WithPrefix())
	if err != nil {
		return 0, err
	}
	byHash, byKey := map[string]*cached{}, map[string]string{}
	for _, kv := range resp.Kvs {
		if t, err := unmarshalToken(kv.Value); err == nil {
			byHash[t.SecretHash] = &cached{token: t, policy: t.Policy()}
			byKey[string(kv.Key)] = t.SecretHash
		} else {
			c.lg.Warn("ignoring a token record that does not parse", zap.String("key", string(kv.Key)), zap.Error(err))
		}
	}
	c.mu.Lock()
	c.byHash, c.byKey, c.loaded = byHash, byKey, true
	c.advance(resp.Header.Revision)
	c.mu.Unlock()
	return resp.Header.Revision, nil
}

// advance moves the view's revision; c.mu is held.
func (c *Cache) advance(rev int64) {
	if rev > c.rev {
		c.rev = rev
		close(c.changed)
		c.changed = make(chan struct{})
	}
}

// follow applies the watch's events; a broken or compacted watch relists.
func (c *Cache) follow(ctx context.Context, rev int64) {
	defer close(c.done)
	backoff := 50 * time.Millisecond
	for ctx.Err() == nil {
		wch := c.cli.Watch(clientv3.WithRequireLeader(ctx), c.prefix, clientv3.WithPrefix(), clientv3.WithRev(rev+1))
		for resp := range wch {
			if err := resp.Err(); err != nil {
				c.lg.Debug("token watch ended; relisting", zap.Error(err))
				break
			}
			c.apply(resp)
			rev = max(rev, resp.Header.Revision)
			backoff = 50 * time.Millisecond
		}
		for ctx.Err() == nil {
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 2*time.Second)
			lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			r, err := c.relist(lctx)
			cancel()
			if err == nil {
				rev = r
				break
			}
		}
	}
}

func (c *Cache) apply(resp clientv3.WatchResponse) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, ev := range resp.Events {
		key := string(ev.Kv.Key)
		if old, ok := c.byKey[key]; ok {
			delete(c.byHash, old)
			delete(c.byKey, key)
		}
		if ev.Type != clientv3.EventTypePut {
			continue
		}
		t, err := unmarshalToken(ev.Kv.Value)
		if err != nil {
			c.lg.Warn("ignoring a token record that does not parse", zap.String("key", key), zap.Error(err))
			continue
		}
		c.byHash[t.SecretHash] = &cached{token: t, policy: t.Policy()}
		c.byKey[key] = t.SecretHash
	}
	c.advance(resp.Header.Revision)
}

// Option configures Start and StartCache.
type Option func(*Cache)

// WithLogger sets the logger (default none).
func WithLogger(lg *zap.Logger) Option { return func(c *Cache) { c.lg = lg } }
