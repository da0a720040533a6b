// Package lock is beacon's distributed lock on etcd: a mutex, or a counting
// semaphore with a limit, whose grants carry fencing tokens.
//
// The key layout is etcd's concurrency.Mutex: every contender puts
// <prefix>/<lease id in hex> under its lease, and the keys with the lowest
// create revisions hold the lock (the lowest one for a mutex, the lowest
// limit ones for a semaphore). So `etcdctl lock <prefix>` and this package
// exclude each other, and a contender's death (its lease revoked or
// expired) frees its place at once.
//
// What differs from concurrency.Mutex is the wait: a waiter opens its
// watch at the current revision (a synced watcher, woken the moment a
// delete commits) instead of at an older one (an unsynced watcher, which
// etcd serves from a loop every 100 ms), and then re-checks its place. A
// handoff thus takes one commit and one watch event, not up to 100 ms.
//
// A grant's token is its key's create revision: revisions only grow, so
// each grant of a lock has a larger token than the one before. Fenced
// writes compare it in the same transaction as the write.
package lock

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/beaconhq/beacon/internal/rpcerr"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
)

// MaxLimit bounds a semaphore's limit.
const MaxLimit = 1024

var (
	// ErrLocked is TryAcquire's answer when the lock is held.
	ErrLocked = rpcerr.NewNamed(codes.Aborted, "lock is held by another session")
	// ErrLost means a grant no longer holds: its lease ended, its key was
	// deleted, or it was released.
	ErrLost = rpcerr.NewNamed(codes.FailedPrecondition, "lock lost")
	// ErrStale is a fenced write refused because its token no longer holds.
	ErrStale = rpcerr.NewNamed(codes.FailedPrecondition, "stale fencing token")
)

// Lock is one grant: a key held under a lease, and its fencing token.
type Lock struct {
	Key   string
	Token int64
	Lease clientv3.LeaseID

	prefix string
	cli    *clientv3.Client
}

// Key is the key a lease contends with under prefix (no trailing slash),
// as concurrency.Mutex names it.
func Key(prefix string, lease clientv3.LeaseID) string {
	return fmt.Sprintf("%s/%x", prefix, lease)
}

type options struct {
	limit int
	value string
	hub   *Hub
}

// Option configures Acquire and TryAcquire.
type Option func(*options)

// WithLimit makes the lock a semaphore: up to n leases hold it at once.
// Everyone using a prefix should agree on n; a concurrency.Mutex on the
// same prefix behaves as n = 1.
func WithLimit(n int) Option { return func(o *options) { o.limit = n } }

// WithValue sets the value of the contender's key: who holds it, for the
// people looking at etcd.
func WithValue(v string) Option { return func(o *options) { o.value = v } }

// WithHub makes Acquire wait on the hub's shared watch of the lock
// instead of a watch of its own (see Hub).
func WithHub(h *Hub) Option { return func(o *options) { o.hub = h } }

func newOptions(opts []Option) (options, error) {
	o := options{limit: 1}
	for _, opt := range opts {
		opt(&o)
	}
	if o.limit < 1 || o.limit > MaxLimit {
		return o, fmt.Errorf("limit %d is not from 1 to %d", o.limit, MaxLimit)
	}
	return o, nil
}

// Acquire waits until lease holds the lock at prefix, ctx ends, or the
// lease ends (ErrLost). It never returns a grant whose lease ended while
// it waited (see waitTurn). On failure it removes its key, so it does not
// hold the lock later by surprise.
//
// One lease contends once per prefix: a second Acquire with the same lease
// shares (and releases) the first one's key, as concurrency.Mutex does.
func Acquire(ctx context.Context, cli *clientv3.Client, prefix string, lease clientv3.LeaseID, opts ...Option) (*Lock, error) {
	o, err := newOptions(opts)
	if err != nil {
		return nil, err
	}
	if o.hub != nil {
		return o.hub.acquire(ctx, cli, prefix, lease, o)
	}
	l, ln, err := enqueue(ctx, cli, prefix, lease, o, false)
	if err != nil || ln.owner {
		return l, err
	}
	if err := waitTurn(ctx, l, o.limit); err != nil {
		l.abandon()
		return nil, err
	}
	return l, nil
}

// TryAcquire takes the lock if lease can hold it now; otherwise it takes
// its key back out and returns ErrLocked.
func TryAcquire(ctx context.Context, cli *clientv3.Client, prefix string, lease clientv3.LeaseID, opts ...Option) (*Lock, error) {
	o, err := newOptions(opts)
	if err != nil {
		return nil, err
	}
	l, ln, err := enqueue(ctx, cli, prefix, lease, o, false)
	if err != nil || ln.owner {
		return l, err
	}
	if ln.created {
		l.abandon()
	}
	return nil, ErrLocked
}

// line is where enqueue found the key.
type line struct {
	owner   bool            // among the first limit keys
	created bool            // enqueue put the key (rather than finding it)
	before  map[string]bool // with whole: the keys ahead of it
	rev     int64           // the revision the line was read at
}

// enqueue puts the lease's key in line, unless it is there already, and
// reads the line in the same transaction: the first limit keys, or with
// whole every key (keys only), so that a waiter with a live watch needs no
// second read. Uncontended, it is the only round trip.
func enqueue(ctx context.Context, cli *clientv3.Client, prefix string, lease clientv3.LeaseID, o options, whole bool) (*Lock, line, error) {
	key := Key(prefix, lease)
	readOpts := []clientv3.OpOption{clientv3.WithPrefix(), clientv3.WithKeysOnly(),
		clientv3.WithSort(clientv3.SortByCreateRevision, clientv3.SortAscend)}
	if !whole {
		readOpts = append(readOpts, clientv3.WithLimit(int64(o.limit)))
	}
	read := clientv3.OpGet(prefix+"/", readOpts...)
	resp, err := cli.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
		Then(clientv3.OpPut(key, o.value, clientv3.WithLease(lease)), read).
		Else(clientv3.OpGet(key), read).
		Commit()
	if errors.Is(err, rpctypes.ErrLeaseNotFound) {
		return nil, line{}, fmt.Errorf("%w: the session's lease %x has ended", ErrLost, lease)
	}
	if err != nil {
		return nil, line{}, err
	}
	l := &Lock{Key: key, Lease: lease, prefix: prefix, cli: cli}
	ln := line{rev: resp.Header.Revision, before: map[string]bool{}}
	if resp.Succeeded {
		l.Token, ln.created = resp.Header.Revision, true
	} else {
		kv := resp.Responses[0].GetResponseRange().Kvs[0]
		if clientv3.LeaseID(kv.Lease) != lease {
			return nil, line{}, fmt.Errorf("%w: %s exists under lease %x, not %x", ErrLost, key, kv.Lease, lease)
		}
		l.Token = kv.CreateRevision
	}
	for _, kv := range resp.Responses[1].GetResponseRange().Kvs {
		if kv.CreateRevision < l.Token {
			ln.before[string(kv.Key)] = true
		}
	}
	ln.owner = len(ln.before) < o.limit
	return l, ln, nil
}

// Release gives the grant up. ErrLost if it no longer held.
func (l *Lock) Release(ctx context.Context) error {
	return Release(ctx, l.cli, l.Key, l.Token)
}

// Release deletes key if it is still the grant with token: a late release
// never removes a newer grant of the same lease.
func Release(ctx context.Context, cli *clientv3.Client, key string, token int64) error {
	resp, err := cli.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(key), "=", token)).
		Then(clientv3.OpDelete(key)).
		Commit()
	if err != nil {
		return err
	}
	if !resp.Succeeded {
		return fmt.Errorf("%w: %s with token %d no longer holds", ErrLost, key, token)
	}
	return nil
}

// abandon takes the key back out after a failed wait, whatever the
// caller's context: a key left behind would take the lock later with
// nobody knowing.
func (l *Lock) abandon() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = Release(ctx, l.cli, l.Key, l.Token) // gone already is fine; the lease bounds a failure
}
