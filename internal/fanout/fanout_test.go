package fanout

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/beaconhq/beacon/internal/etcdtest"
	clientv3 "go.etcd.io/etcd/client/v3"
)

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// feedCount is how many feeds the hub has open.
func (h *Hub) feedCount() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.feeds)
}

// nextWithin is Next bounded by d.
func nextWithin(t *testing.T, s *Sub, d time.Duration) ([]*clientv3.Event, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	return s.Next(ctx)
}

// TestSharedFeed: subscribers of one prefix share one feed and each gets
// every event after its From, in order, and nothing of other prefixes.
func TestSharedFeed(t *testing.T) {
	cli, _ := etcdtest.New(t)
	ctx := testCtx(t)
	h := New(cli)
	before, _ := cli.Put(ctx, "/p/a", "0")

	s1, err := h.Subscribe(ctx, "/p/")
	if err != nil {
		t.Fatal(err)
	}
	defer s1.Close()
	if s1.From() < before.Header.Revision {
		t.Fatalf("From %d is before a put at %d that preceded the subscription", s1.From(), before.Header.Revision)
	}
	r1, _ := cli.Put(ctx, "/p/b", "1")
	s2, err := h.Subscribe(ctx, "/p/")
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if n := h.feedCount(); n != 1 {
		t.Fatalf("%d feeds for one prefix", n)
	}
	if _, err := cli.Put(ctx, "/q/x", "other prefix"); err != nil {
		t.Fatal(err)
	}
	tx, err := cli.Txn(ctx).Then(clientv3.OpPut("/p/c", "2"), clientv3.OpDelete("/p/a")).Commit()
	if err != nil {
		t.Fatal(err)
	}

	// s1 subscribed before r1: it gets r1, then the transaction whole.
	var got []string
	for len(got) < 3 {
		evs, err := nextWithin(t, s1, 10*time.Second)
		if err != nil {
			t.Fatalf("s1 after %v: %v", got, err)
		}
		for _, ev := range evs {
			got = append(got, fmt.Sprintf("%s %s@%d", ev.Type, ev.Kv.Key, ev.Kv.ModRevision))
		}
	}
	want := fmt.Sprint([]string{
		fmt.Sprintf("PUT /p/b@%d", r1.Header.Revision),
		fmt.Sprintf("PUT /p/c@%d", tx.Header.Revision),
		fmt.Sprintf("DELETE /p/a@%d", tx.Header.Revision),
	})
	if fmt.Sprint(got) != want {
		t.Fatalf("s1 got %v, want %v", got, want)
	}
	// s2 subscribed after r1 was written, but perhaps before the feed had
	// it: it gets exactly the events above its From.
	var got2 []string
	for len(got2) == 0 || got2[len(got2)-1] != got[2] {
		evs, err := nextWithin(t, s2, 10*time.Second)
		if err != nil {
			t.Fatalf("s2 after %v: %v", got2, err)
		}
		for _, ev := range evs {
			got2 = append(got2, fmt.Sprintf("%s %s@%d", ev.Type, ev.Kv.Key, ev.Kv.ModRevision))
		}
	}
	want2 := got[1:]
	if s2.From() < r1.Header.Revision {
		want2 = got
	}
	if fmt.Sprint(got2) != fmt.Sprint(want2) {
		t.Fatalf("s2 (from %d) got %v, want %v", s2.From(), got2, want2)
	}
}

// TestSlowSubscriberDropped: a subscriber that reads nothing is dropped
// with ErrSlow once more than Limit events wait, with what it had queued
// released; another subscriber of the same feed keeps receiving.
func TestSlowSubscriberDropped(t *testing.T) {
	cli, _ := etcdtest.New(t)
	ctx := testCtx(t)
	h := New(cli)
	h.Limit = 10
	slow, err := h.Subscribe(ctx, "/p/")
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	fast, err := h.Subscribe(ctx, "/p/")
	if err != nil {
		t.Fatal(err)
	}
	defer fast.Close()

	var last int64
	for i := 0; i < 3*h.Limit; i++ {
		r, err := cli.Put(ctx, fmt.Sprintf("/p/%d", i), "v")
		if err != nil {
			t.Fatal(err)
		}
		last = r.Header.Revision
		// fast reads every event as it comes.
		evs, err := nextWithin(t, fast, 10*time.Second)
		if err != nil || len(evs) != 1 || evs[0].Kv.ModRevision != last {
			t.Fatalf("fast subscriber at put %d: %v %v", i, evs, err)
		}
	}
	slow.mu.Lock()
	queued := slow.queued
	slow.mu.Unlock()
	if queued != 0 {
		t.Fatalf("the dropped subscriber still holds %d events", queued)
	}
	if _, err := nextWithin(t, slow, time.Second); !errors.Is(err, ErrSlow) {
		t.Fatalf("slow subscriber: %v, want ErrSlow", err)
	}
	// A transaction larger than Limit still reaches a subscriber that
	// keeps up: etcd never splits a revision, neither does the hub.
	var ops []clientv3.Op
	for i := 0; i < 2*h.Limit; i++ {
		ops = append(ops, clientv3.OpPut(fmt.Sprintf("/p/big/%d", i), "v"))
	}
	tx, err := cli.Txn(ctx).Then(ops...).Commit()
	if err != nil {
		t.Fatal(err)
	}
	evs, err := nextWithin(t, fast, 10*time.Second)
	if err != nil || len(evs) != len(ops) || evs[0].Kv.ModRevision != tx.Header.Revision {
		t.Fatalf("big transaction: %d events, %v", len(evs), err)
	}
}

// TestStormOneFeed: thousands of subscribers coming and going on a few
// prefixes make one feed per prefix, and the feeds close after Linger
// once nobody is left.
func TestStormOneFeed(t *testing.T) {
	cli, _ := etcdtest.New(t)
	ctx := testCtx(t)
	h := New(cli)
	h.Linger = 2 * time.Second
	const n, conc, prefixes = 3000, 64, 4
	var wg sync.WaitGroup
	errs := make(chan error, conc)
	for w := 0; w < conc; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := w; i < n; i += conc {
				s, err := h.Subscribe(ctx, fmt.Sprintf("/storm/%d/", i%prefixes))
				if err != nil {
					errs <- err
					return
				}
				s.Close()
			}
		}(w)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	h.mu.Lock()
	started := h.started
	h.mu.Unlock()
	if started != prefixes {
		t.Fatalf("%d feeds started for %d subscriptions to %d prefixes, want one per prefix", started, n, prefixes)
	}
	deadline := time.Now().Add(10 * time.Second)
	for h.feedCount() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d feeds still open 10s after their last subscriber left (Linger %s)", h.feedCount(), h.Linger)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// A feed closed for idleness opens again for the next subscriber.
	s, err := h.Subscribe(ctx, "/storm/0/")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	r, _ := cli.Put(ctx, "/storm/0/k", "v")
	if evs, err := nextWithin(t, s, 10*time.Second); err != nil || evs[0].Kv.ModRevision != r.Header.Revision {
		t.Fatalf("after reopening: %v %v", evs, err)
	}
}

// TestClientClosedBreaks: closing the client ends every subscription
// with a *BrokenError, after the events already queued; For forgets the
// client's hub.
func TestClientClosedBreaks(t *testing.T) {
	first, _ := etcdtest.New(t)
	cli := etcdtest.Client(t, first.Endpoints()[0])
	ctx := testCtx(t)
	h := For(cli)
	if For(cli) != h {
		t.Fatal("For gave two hubs for one client")
	}
	s, err := h.Subscribe(ctx, "/p/")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	r, _ := cli.Put(ctx, "/p/k", "v")
	deadline := time.Now().Add(10 * time.Second)
	for {
		s.mu.Lock()
		q := s.queued
		s.mu.Unlock()
		if q > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the put never reached the subscription")
		}
		time.Sleep(5 * time.Millisecond)
	}
	cli.Close()
	if evs, err := nextWithin(t, s, 10*time.Second); err != nil || evs[0].Kv.ModRevision != r.Header.Revision {
		t.Fatalf("queued event after close: %v %v", evs, err)
	}
	if _, err := nextWithin(t, s, 10*time.Second); err == nil {
		t.Fatal("no error after the client closed")
	} else if b := (*BrokenError)(nil); !errors.As(err, &b) || !errors.Is(err, ErrClosed) {
		t.Fatalf("after the client closed: %v, want a *BrokenError of ErrClosed", err)
	}
	// A subscription on the closed client fails at once.
	if _, err := For(cli).Subscribe(ctx, "/p/"); !errors.Is(err, ErrClosed) {
		t.Fatalf("Subscribe on a closed client: %v, want ErrClosed", err)
	}
	deadline = time.Now().Add(10 * time.Second)
	for {
		hubsMu.Lock()
		_, kept := hubs[cli]
		hubsMu.Unlock()
		if !kept {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("For still holds the hub of a closed client")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
