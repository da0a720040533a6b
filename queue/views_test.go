package queue

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/beaconhq/beacon/internal/rpcerr"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// viewCount is how many queues b follows.
func viewCount(b *Broker) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.views.byName)
}

// viewOf is b's view of q, and how many calls hold it.
func viewOf(b *Broker, q string) (*view, int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	v := b.views.lookup(q)
	if v == nil {
		return nil, 0
	}
	return v, v.refs
}

// 5,000 distinct queue names asked about by 8 clients at once: half with
// a Reserve that waits (which needs a view), half with Stats and a
// Reserve that does not. The broker never follows more queues than its
// limit, and the names that were only read start no view at all.
// (Before the limit, each name kept a watch and two goroutines for a
// minute: 2,500 views here.)
func TestViewsBounded(t *testing.T) {
	const limit, names, workers = 16, 5000, 8
	b := New(newClient(t), "/beacon/", WithNode("a"), WithMaxViews(limit))
	t.Cleanup(func() { b.Close() })
	prefix := queueName(t)
	var next, most atomic.Int64
	var readOnly sync.Map // names only read
	var wg sync.WaitGroup
	deadline := time.Now().Add(3 * time.Minute)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) {
				i := next.Add(1)
				if i > names {
					return
				}
				q := fmt.Sprintf("%s-%d", prefix, i)
				if i%2 == 0 {
					if _, err := b.Reserve(ctxT(t), q, WithWait(time.Millisecond)); !errors.Is(err, ErrEmpty) {
						t.Errorf("reserve with wait from %s: %v, want ErrEmpty", q, err)
						return
					}
				} else {
					readOnly.Store(q, true)
					if s, err := b.Stats(ctxT(t), q); err != nil || s.Depth != 0 {
						t.Errorf("stats of %s: %+v %v", q, s, err)
						return
					}
					if _, err := b.Reserve(ctxT(t), q); !errors.Is(err, ErrEmpty) {
						t.Errorf("reserve from %s: %v, want ErrEmpty", q, err)
						return
					}
				}
				n := int64(viewCount(b))
				for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
				}
			}
		}()
	}
	wg.Wait()
	if n := next.Load(); n <= names {
		t.Fatalf("only %d of %d names asked about in 3 minutes", n-1, names)
	}
	if m := most.Load(); m > limit {
		t.Fatalf("the broker followed %d queues at once, over its limit of %d", m, limit)
	}
	readOnly.Range(func(q, _ any) bool {
		if v, _ := viewOf(b, q.(string)); v != nil {
			t.Errorf("queue %s was only read, and has a view", q)
			return false
		}
		return true
	})
}

// A queue used all along keeps its view while new names come and go
// through the broker's other places: the least recently used idle view
// makes room, never the busy queue's.
func TestViewsLeastRecentlyUsedEvicted(t *testing.T) {
	const limit, rounds = 4, 100
	b := New(newClient(t), "/beacon/", WithNode("a"), WithMaxViews(limit))
	t.Cleanup(func() { b.Close() })
	busy := queueName(t) + "-busy"
	for i := range rounds {
		mustEnqueue(t, b, busy, fmt.Sprint("m", i))
	}
	var first *view
	for i := range rounds {
		d := mustReserve(t, b, busy)
		if err := b.Ack(ctxT(t), d.Receipt); err != nil {
			t.Fatal(err)
		}
		v, _ := viewOf(b, busy)
		if first == nil {
			first = v
		}
		if v != first {
			t.Fatalf("round %d: the busy queue's view was evicted and started again", i)
		}
		q := fmt.Sprintf("%s-%d", busy, i)
		if _, err := b.Reserve(ctxT(t), q, WithWait(time.Millisecond)); !errors.Is(err, ErrEmpty) {
			t.Fatalf("reserve from %s: %v", q, err)
		}
		if n := viewCount(b); n > limit {
			t.Fatalf("round %d: %d views, over the limit of %d", i, n, limit)
		}
	}
}

// With every view in use (a Reserve waiting on each queue), a call that
// needs one more is refused, ResourceExhausted, naming the limit and its
// key; calls that need no view are still answered, and the waiting calls
// keep their views and get their messages.
func TestViewsRefusedWhenAllInUse(t *testing.T) {
	b := New(newClient(t), "/beacon/", WithNode("a"), WithMaxViews(2))
	t.Cleanup(func() { b.Close() })
	base := queueName(t)
	waiting := []string{base + "-a", base + "-b"}
	got := make(chan error, len(waiting))
	for _, q := range waiting {
		go func() {
			d, err := b.Reserve(ctxT(t), q, WithWait(25*time.Second))
			if err == nil && string(d.Payload) != q {
				err = fmt.Errorf("got %q from %s", d.Payload, q)
			}
			got <- err
		}()
	}
	deadline := time.Now().Add(20 * time.Second)
	for _, q := range waiting {
		for _, refs := viewOf(b, q); refs == 0; _, refs = viewOf(b, q) {
			if time.Now().After(deadline) {
				t.Fatalf("no Reserve waiting on %s", q)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}

	other := base + "-c"
	_, err := b.Reserve(ctxT(t), other, WithWait(time.Millisecond))
	if !errors.Is(err, ErrTooManyViews) || status.Code(rpcerr.From(err)) != codes.ResourceExhausted ||
		!strings.Contains(err.Error(), "max-queue-views 2") {
		t.Fatalf("reserve with every view in use: %v, want ResourceExhausted naming max-queue-views 2", err)
	}
	t.Logf("refused: %v", err)
	if _, err := b.Wait(ctxT(t), other, 1); !errors.Is(err, ErrTooManyViews) {
		t.Fatalf("wait with every view in use: %v, want ErrTooManyViews", err)
	}
	if _, err := b.Reserve(ctxT(t), other); !errors.Is(err, ErrEmpty) {
		t.Fatalf("reserve without waiting, from an empty queue: %v, want ErrEmpty", err)
	}
	if _, err := b.Stats(ctxT(t), other); err != nil {
		t.Fatalf("stats with every view in use: %v", err)
	}

	for _, q := range waiting {
		mustEnqueue(t, b, q, q)
	}
	for range waiting {
		if err := <-got; err != nil {
			t.Fatalf("a Reserve waiting through the refusals: %v", err)
		}
	}
	if _, err := b.Reserve(ctxT(t), other, WithWait(time.Millisecond)); !errors.Is(err, ErrEmpty) {
		t.Fatalf("reserve once a view is idle: %v, want ErrEmpty", err)
	}
}
