package lock

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
)

var prefixSeq atomic.Int64

func testPrefix(t *testing.T) string {
	return fmt.Sprintf("/locktest/%s-%d", t.Name(), prefixSeq.Add(1))
}

// keys is how many contenders stand in line under prefix.
func keys(t *testing.T, cli *clientv3.Client, prefix string) int {
	t.Helper()
	resp, err := cli.Get(context.Background(), prefix+"/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		t.Fatal(err)
	}
	return int(resp.Count)
}

// waitKeys waits until n contenders stand in line.
func waitKeys(t *testing.T, cli *clientv3.Client, prefix string, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for keys(t, cli, prefix) != n {
		if time.Now().After(deadline) {
			t.Fatalf("%d keys under %s, want %d", keys(t, cli, prefix), prefix, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

type result struct {
	l   *Lock
	err error
}

func acquireAsync(ctx context.Context, cli *clientv3.Client, prefix string, lease clientv3.LeaseID, opts ...Option) chan result {
	ch := make(chan result, 1)
	go func() {
		l, err := Acquire(ctx, cli, prefix, lease, opts...)
		ch <- result{l, err}
	}()
	return ch
}

func TestExcludesConcurrencyMutex(t *testing.T) {
	cli := testEtcd(t)
	ctx := ctxT(t)
	prefix := testPrefix(t)

	s1, err := concurrency.NewSession(cli)
	if err != nil {
		t.Fatal(err)
	}
	defer s1.Close()
	m := concurrency.NewMutex(s1, prefix)
	if err := m.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	mine := lease(t, cli, 30)
	if _, err := TryAcquire(ctx, cli, prefix, mine); !errors.Is(err, ErrLocked) {
		t.Fatalf("TryAcquire while concurrency.Mutex holds: %v, want ErrLocked", err)
	}
	if n := keys(t, cli, prefix); n != 1 {
		t.Fatalf("TryAcquire left its key behind: %d keys", n)
	}

	got := acquireAsync(ctx, cli, prefix, mine)
	waitKeys(t, cli, prefix, 2)
	select {
	case r := <-got:
		t.Fatalf("Acquire returned while concurrency.Mutex holds: %+v", r)
	default:
	}
	mutexRev := m.Header().Revision
	if err := m.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	r := <-got
	if r.err != nil {
		t.Fatal(r.err)
	}
	if r.l.Key != Key(prefix, mine) || r.l.Token <= mutexRev {
		t.Fatalf("grant %s token %d; want key %s, token above the mutex's %d", r.l.Key, r.l.Token, Key(prefix, mine), mutexRev)
	}

	s2, err := concurrency.NewSession(cli)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	m2 := concurrency.NewMutex(s2, prefix)
	if err := m2.TryLock(ctx); !errors.Is(err, concurrency.ErrLocked) {
		t.Fatalf("concurrency.Mutex TryLock while we hold: %v, want ErrLocked", err)
	}
	if err := r.l.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if err := m2.TryLock(ctx); err != nil {
		t.Fatalf("concurrency.Mutex after our release: %v", err)
	}
	_ = m2.Unlock(ctx)
}

func TestTokensIncrease(t *testing.T) {
	cli := testEtcd(t)
	ctx := ctxT(t)
	prefix := testPrefix(t)
	var last int64
	for i := 0; i < 5; i++ {
		l, err := Acquire(ctx, cli, prefix, lease(t, cli, 30))
		if err != nil {
			t.Fatal(err)
		}
		if l.Token <= last {
			t.Fatalf("grant %d has token %d, not above %d", i, l.Token, last)
		}
		last = l.Token
		if err := l.Release(ctx); err != nil {
			t.Fatal(err)
		}
		if err := l.Release(ctx); !errors.Is(err, ErrLost) {
			t.Fatalf("second release: %v, want ErrLost", err)
		}
	}
}

// withHubs runs a test with waiters on watches of their own, and on a
// hub's shared watch.
func withHubs(t *testing.T, f func(t *testing.T, cli *clientv3.Client, opts ...Option)) {
	cli := testEtcd(t)
	t.Run("own-watch", func(t *testing.T) { f(t, cli) })
	hub := NewHub(cli)
	t.Run("hub", func(t *testing.T) { f(t, cli, WithHub(hub)) })
	t.Run("hub-again", func(t *testing.T) { f(t, cli, WithHub(hub)) }) // a feed that is live already
}

// releaser releases as the agent does: through the hub when there is one
// (handing the line's head to its waiters, see Hub.Release).
func releaser(ctx context.Context, cli *clientv3.Client, opts []Option) func(*Lock) error {
	if o, _ := newOptions(opts); o.hub != nil {
		return func(l *Lock) error { return o.hub.Release(ctx, cli, l.Key, l.Token) }
	}
	return func(l *Lock) error { return l.Release(ctx) }
}

func TestSemaphoreLimit(t *testing.T) { withHubs(t, testSemaphoreLimit) }

func testSemaphoreLimit(t *testing.T, cli *clientv3.Client, opts ...Option) {
	ctx := ctxT(t)
	prefix := testPrefix(t)
	var held []*Lock
	for i := 0; i < 3; i++ {
		l, err := TryAcquire(ctx, cli, prefix, lease(t, cli, 30), WithLimit(3))
		if err != nil {
			t.Fatalf("slot %d: %v", i, err)
		}
		held = append(held, l)
	}
	fourth := lease(t, cli, 30)
	if _, err := TryAcquire(ctx, cli, prefix, fourth, WithLimit(3)); !errors.Is(err, ErrLocked) {
		t.Fatalf("fourth TryAcquire with limit 3: %v, want ErrLocked", err)
	}
	got := acquireAsync(ctx, cli, prefix, fourth, append(opts, WithLimit(3))...)
	waitKeys(t, cli, prefix, 4)
	select {
	case r := <-got:
		t.Fatalf("fourth Acquire returned with three slots held: %+v", r)
	default:
	}
	if err := releaser(ctx, cli, opts)(held[1]); err != nil { // a middle slot frees up
		t.Fatal(err)
	}
	r := <-got
	if r.err != nil {
		t.Fatalf("fourth Acquire: %v", r.err)
	}
	// And a mutex user on the same prefix sees it held.
	if _, err := TryAcquire(ctx, cli, prefix, lease(t, cli, 30)); !errors.Is(err, ErrLocked) {
		t.Fatalf("mutex TryAcquire on a full semaphore: %v", err)
	}
	if _, err := Acquire(ctx, cli, prefix, fourth, WithLimit(0)); err == nil {
		t.Fatal("limit 0 accepted")
	}
}

// A waiter whose predecessor leaves the line early keeps waiting for the
// holder: it must re-count, not take the lock on any delete.
func TestWaiterRecountsOnEarlyLeave(t *testing.T) { withHubs(t, testWaiterRecountsOnEarlyLeave) }

func testWaiterRecountsOnEarlyLeave(t *testing.T, cli *clientv3.Client, opts ...Option) {
	ctx := ctxT(t)
	prefix := testPrefix(t)
	a, err := Acquire(ctx, cli, prefix, lease(t, cli, 30))
	if err != nil {
		t.Fatal(err)
	}
	b := lease(t, cli, 30)
	bGot := acquireAsync(ctx, cli, prefix, b, opts...)
	waitKeys(t, cli, prefix, 2)
	var aReleased atomic.Bool
	cGot := make(chan result, 1)
	go func() {
		l, err := Acquire(ctx, cli, prefix, lease(t, cli, 30), opts...)
		if err == nil && !aReleased.Load() {
			err = fmt.Errorf("C acquired while A still held the lock")
		}
		cGot <- result{l, err}
	}()
	waitKeys(t, cli, prefix, 3)

	if _, err := cli.Revoke(ctx, b); err != nil { // B dies while waiting
		t.Fatal(err)
	}
	if r := <-bGot; !errors.Is(r.err, ErrLost) {
		t.Fatalf("B's Acquire after its lease was revoked: %v, want ErrLost", r.err)
	}
	waitKeys(t, cli, prefix, 2)
	select {
	case r := <-cGot:
		t.Fatalf("C returned while A holds: %+v", r)
	default:
	}
	aReleased.Store(true)
	if err := a.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if r := <-cGot; r.err != nil {
		t.Fatal(r.err)
	}
}

func TestAcquireTimeoutLeavesNoKey(t *testing.T) { withHubs(t, testAcquireTimeoutLeavesNoKey) }

func testAcquireTimeoutLeavesNoKey(t *testing.T, cli *clientv3.Client, opts ...Option) {
	ctx := ctxT(t)
	prefix := testPrefix(t)
	if _, err := Acquire(ctx, cli, prefix, lease(t, cli, 30)); err != nil {
		t.Fatal(err)
	}
	tctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	_, err := Acquire(tctx, cli, prefix, lease(t, cli, 30), opts...)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Acquire past its deadline: %v", err)
	}
	if n := keys(t, cli, prefix); n != 1 {
		t.Fatalf("%d keys after a timed-out Acquire, want the holder's only", n)
	}
}

func TestFencedRefusesStaleToken(t *testing.T) {
	cli := testEtcd(t)
	ctx := ctxT(t)
	prefix := testPrefix(t)
	data := prefix + "-data"
	la := lease(t, cli, 30)
	a, err := Acquire(ctx, cli, prefix, la)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Fenced(ctx, cli, a.Key, a.Token, clientv3.OpPut(data, "a1")); err != nil {
		t.Fatal(err)
	}
	watchErr := make(chan error, 1)
	heldSeen := make(chan struct{})
	go func() {
		watchErr <- Watch(ctx, cli, a.Key, a.Token, func() { close(heldSeen) })
	}()
	<-heldSeen
	if _, err := cli.Revoke(ctx, la); err != nil { // A's lease ends
		t.Fatal(err)
	}
	if err := <-watchErr; !errors.Is(err, ErrLost) {
		t.Fatalf("Watch after the lease ended: %v, want ErrLost", err)
	}
	b, err := Acquire(ctx, cli, prefix, lease(t, cli, 30))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Fenced(ctx, cli, a.Key, a.Token, clientv3.OpPut(data, "a2")); !errors.Is(err, ErrStale) {
		t.Fatalf("fenced put with A's token after B took over: %v, want ErrStale", err)
	}
	if _, err := Fenced(ctx, cli, b.Key, b.Token, clientv3.OpPut(data, "b1")); err != nil {
		t.Fatal(err)
	}
	// A token of the right key but an older grant fails too.
	if _, err := Fenced(ctx, cli, b.Key, a.Token, clientv3.OpPut(data, "x")); !errors.Is(err, ErrStale) {
		t.Fatalf("B's key with A's token: %v", err)
	}
	resp, err := cli.Get(ctx, data)
	if err != nil {
		t.Fatal(err)
	}
	if string(resp.Kvs[0].Value) != "b1" {
		t.Fatalf("data = %q, want b1 (no stale write applied)", resp.Kvs[0].Value)
	}
	if err := Watch(ctx, cli, a.Key, a.Token, func() { t.Error("held called for a lost grant") }); !errors.Is(err, ErrLost) {
		t.Fatalf("Watch of a lost grant: %v", err)
	}
}

func TestLeaseOf(t *testing.T) {
	for key, ok := range map[string]bool{
		"/beacon/locks/x/694d9a1b2c3d4e5f": true, "/beacon/locks/x/": false, "nohex": false,
		"/beacon/locks/x/zz": false, "/beacon/locks/x/-5": false,
	} {
		if _, err := LeaseOf(key); (err == nil) != ok {
			t.Errorf("LeaseOf(%q): %v", key, err)
		}
	}
}

// Contenders loop acquire → release on one lock, as in `beacon bench
// lock`: never two inside at once, with or without the hub (whose feed is
// live for most of them, so their enqueue reads the whole line).
func TestContendersExclude(t *testing.T) { withHubs(t, testContendersExclude) }

func testContendersExclude(t *testing.T, cli *clientv3.Client, opts ...Option) {
	ctx := ctxT(t)
	prefix := testPrefix(t)
	release := releaser(ctx, cli, opts)
	var inside, overlaps, grants atomic.Int64
	var last atomic.Int64
	errs := make(chan error, 8)
	for i := 0; i < 8; i++ {
		go func() {
			ls := lease(t, cli, 30)
			for j := 0; j < 25; j++ {
				l, err := Acquire(ctx, cli, prefix, ls, opts...)
				if err != nil {
					errs <- err
					return
				}
				if inside.Add(1) != 1 {
					overlaps.Add(1)
				}
				if prev := last.Swap(l.Token); prev >= l.Token {
					errs <- fmt.Errorf("token %d after %d", l.Token, prev)
					return
				}
				grants.Add(1)
				inside.Add(-1)
				if err := release(l); err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for i := 0; i < 8; i++ {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if overlaps.Load() != 0 || grants.Load() != 200 {
		t.Fatalf("%d overlaps in %d grants", overlaps.Load(), grants.Load())
	}
}
