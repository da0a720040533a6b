package lock

import (
	"context"
	"errors"
	"testing"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// eventlessWatcher is a Watcher whose watches are created but deliver no
// event: a hub on it can only learn of a turn from a release's head.
type eventlessWatcher struct{ clientv3.Watcher }

func (w eventlessWatcher) Watch(ctx context.Context, key string, opts ...clientv3.OpOption) clientv3.WatchChan {
	out := make(chan clientv3.WatchResponse)
	go func() {
		defer close(out)
		for wr := range w.Watcher.Watch(ctx, key, opts...) {
			if len(wr.Events) > 0 && wr.Err() == nil && !wr.Canceled {
				continue
			}
			select {
			case out <- wr:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out
}

// eventlessHub is a hub whose feeds see no events.
func eventlessHub(cli *clientv3.Client) *Hub {
	c := clientv3.NewCtxClient(context.Background())
	c.KV, c.Lease, c.Watcher = cli.KV, cli.Lease, eventlessWatcher{cli.Watcher}
	return NewHub(c)
}

// A release through the hub hands the next waiter its turn by itself: on
// a hub whose watch brings no event, the waiter still gets the lock, and
// only the first in line does.
func TestHandoffByRelease(t *testing.T) {
	cli := testEtcd(t)
	ctx := ctxT(t)
	prefix := testPrefix(t)
	hub := eventlessHub(cli)
	a, err := Acquire(ctx, cli, prefix, lease(t, cli, 30), WithHub(hub))
	if err != nil {
		t.Fatal(err)
	}
	bGot := acquireAsync(ctx, cli, prefix, lease(t, cli, 30), WithHub(hub))
	waitKeys(t, cli, prefix, 2)
	cGot := acquireAsync(ctx, cli, prefix, lease(t, cli, 30), WithHub(hub))
	waitKeys(t, cli, prefix, 3)

	if err := hub.Release(ctx, cli, a.Key, a.Token); err != nil {
		t.Fatal(err)
	}
	b := <-bGot
	if b.err != nil {
		t.Fatalf("B after A's release through the hub: %v", b.err)
	}
	select {
	case r := <-cGot:
		t.Fatalf("C returned while B holds: %+v", r)
	default:
	}
	if err := hub.Release(ctx, cli, b.l.Key, b.l.Token); err != nil {
		t.Fatal(err)
	}
	c := <-cGot
	if c.err != nil {
		t.Fatalf("C after B's release: %v", c.err)
	}
	if c.l.Token <= b.l.Token || b.l.Token <= a.Token {
		t.Fatalf("tokens %d, %d, %d do not increase", a.Token, b.l.Token, c.l.Token)
	}
	if err := hub.Release(ctx, cli, c.l.Key, c.l.Token); err != nil {
		t.Fatal(err)
	}
	// A second release of a released grant is ErrLost, as without a hub.
	if err := hub.Release(ctx, cli, c.l.Key, c.l.Token); !errors.Is(err, ErrLost) {
		t.Fatalf("releasing twice: %v, want ErrLost", err)
	}
}

// A waiter whose lease ended while it waited is never told it holds by a
// release's head: the head does not list its key, and the watch's delete
// ends the wait with ErrLost.
func TestHandoffSkipsDeadWaiter(t *testing.T) {
	cli := testEtcd(t)
	ctx := ctxT(t)
	prefix := testPrefix(t)
	hub := NewHub(cli)
	a, err := Acquire(ctx, cli, prefix, lease(t, cli, 30), WithHub(hub))
	if err != nil {
		t.Fatal(err)
	}
	b := lease(t, cli, 30)
	bGot := acquireAsync(ctx, cli, prefix, b, WithHub(hub))
	waitKeys(t, cli, prefix, 2)
	cGot := acquireAsync(ctx, cli, prefix, lease(t, cli, 30), WithHub(hub))
	waitKeys(t, cli, prefix, 3)
	if _, err := cli.Revoke(ctx, b); err != nil {
		t.Fatal(err)
	}
	waitKeys(t, cli, prefix, 2)
	if err := hub.Release(ctx, cli, a.Key, a.Token); err != nil {
		t.Fatal(err)
	}
	if r := <-bGot; !errors.Is(r.err, ErrLost) {
		t.Fatalf("B, revoked while waiting: %+v, want ErrLost", r)
	}
	if r := <-cGot; r.err != nil {
		t.Fatalf("C: %v", r.err)
	}
}

func TestLineHeadGrants(t *testing.T) {
	l := &Lock{Key: "/p/b", Token: 20}
	head := func(rev int64, keys ...headKey) *lineHead { return &lineHead{rev: rev, keys: keys} }
	for _, c := range []struct {
		name  string
		head  *lineHead
		limit int
		want  bool
	}{
		{"none", nil, 1, false},
		{"first", head(30, headKey{"/p/b", 20}, headKey{"/p/c", 25}), 1, true},
		{"second of a mutex", head(30, headKey{"/p/a", 10}, headKey{"/p/b", 20}), 1, false},
		{"second of a semaphore of 2", head(30, headKey{"/p/a", 10}, headKey{"/p/b", 20}), 2, true},
		{"read before the key existed", head(15, headKey{"/p/b", 20}), 1, false},
		{"the key made again by another grant", head(30, headKey{"/p/b", 28}), 1, false},
		{"absent", head(30, headKey{"/p/c", 25}), 1, false},
	} {
		if got := c.head.grants(l, c.limit); got != c.want {
			t.Errorf("%s: grants = %v, want %v", c.name, got, c.want)
		}
	}
}

// A closed hub ends the waits in flight, and refuses later ones, with
// ErrHubClosed; the waiters' keys are taken back out.
func TestHubClose(t *testing.T) {
	cli := testEtcd(t)
	ctx := ctxT(t)
	prefix := testPrefix(t)
	hub := NewHub(cli)
	if _, err := Acquire(ctx, cli, prefix, lease(t, cli, 30), WithHub(hub)); err != nil {
		t.Fatal(err)
	}
	waiting := acquireAsync(ctx, cli, prefix, lease(t, cli, 30), WithHub(hub))
	waitKeys(t, cli, prefix, 2)
	hub.Close()
	if r := <-waiting; !errors.Is(r.err, ErrHubClosed) {
		t.Fatalf("a wait in flight when the hub closed: %+v, want ErrHubClosed", r)
	}
	if _, err := Acquire(ctx, cli, prefix, lease(t, cli, 30), WithHub(hub)); !errors.Is(err, ErrHubClosed) {
		t.Fatalf("a wait after Close: %v, want ErrHubClosed", err)
	}
	waitKeys(t, cli, prefix, 1)
}
