package lock

import (
	"context"
	"errors"
	"github.com/beaconhq/beacon/internal/rpcerr"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
)

// Hub lets the waiters of one process (the agent) share one etcd watch per
// lock. Without it every waiter opens a watch, reads the line, and cancels
// the watch when its turn comes: three more round trips per grant, and
// every release sent to every waiter by etcd. With it, a waiter subscribes
// to the lock's feed, and since the feed's watch is live before the
// waiter's enqueue transaction, that one transaction's read of the line
// is enough: contended or not, Acquire is one round trip to etcd, and a
// release reaches this process once. A feed outlives its last waiter by a
// while (Linger), for the next contention.
type Hub struct {
	cli *clientv3.Client
	// Linger is how long a feed stays open without waiters.
	Linger time.Duration

	mu     sync.Mutex
	feeds  map[string]*feed // by lock prefix
	closed bool
}

// ErrHubClosed: the agent is stopping; its waiters give up.
var ErrHubClosed = rpcerr.NewNamed(codes.Unavailable, "the agent is stopping")

// Close ends every feed; waiters then fail with ErrHubClosed, and so does
// any later wait.
func (h *Hub) Close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = true
	for prefix, f := range h.feeds {
		delete(h.feeds, prefix)
		f.cancel()
	}
}

// NewHub returns a hub whose feeds watch through cli.
func NewHub(cli *clientv3.Client) *Hub {
	return &Hub{cli: cli, Linger: 10 * time.Second, feeds: map[string]*feed{}}
}

// feed is one lock's shared watch of deletes.
type feed struct {
	prefix string
	ready  chan struct{} // closed once the watch is live (rev set) or failed (err set)
	rev    int64
	err    error
	cancel context.CancelFunc
	subs   map[*sub]bool
	idle   *time.Timer
}

// sub is one waiter's queue of a feed's events, and the newest head of
// the line a release through this hub read (see Release).
type sub struct {
	limit  int // the waiter's
	mu     sync.Mutex
	events []*clientv3.Event
	head   *lineHead
	broken bool
	wake   chan struct{}
}

func (h *Hub) subscribe(prefix string, limit int) (*feed, *sub) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		f := &feed{prefix: prefix, ready: make(chan struct{}), err: ErrHubClosed, cancel: func() {}, subs: map[*sub]bool{}}
		close(f.ready)
		return f, &sub{limit: limit, broken: true, wake: make(chan struct{}, 1)}
	}
	f := h.feeds[prefix]
	if f == nil {
		ctx, cancel := context.WithCancel(clientv3.WithRequireLeader(context.Background()))
		f = &feed{prefix: prefix, ready: make(chan struct{}), cancel: cancel, subs: map[*sub]bool{}}
		h.feeds[prefix] = f
		go h.run(ctx, f)
	}
	if f.idle != nil {
		f.idle.Stop()
		f.idle = nil
	}
	s := &sub{limit: limit, wake: make(chan struct{}, 1)}
	f.subs[s] = true
	return f, s
}

func (h *Hub) unsubscribe(f *feed, s *sub) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(f.subs, s)
	if len(f.subs) > 0 || h.feeds[f.prefix] != f {
		return
	}
	f.idle = time.AfterFunc(h.Linger, func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		if len(f.subs) == 0 && h.feeds[f.prefix] == f {
			delete(h.feeds, f.prefix)
			f.cancel()
		}
	})
}

// run feeds deletes to the subscribers until the watch ends (cancelled
// for lack of waiters, or broken: then the subscribers start over).
func (h *Hub) run(ctx context.Context, f *feed) {
	defer f.cancel()
	wch := h.cli.Watch(ctx, f.prefix+"/", clientv3.WithPrefix(), clientv3.WithFilterPut(), clientv3.WithCreatedNotify())
	live := false
	for wr := range wch {
		if wr.Err() != nil || wr.Canceled {
			break
		}
		if wr.Created && !live {
			f.rev, live = wr.Header.Revision, true
			close(f.ready)
			continue
		}
		if len(wr.Events) == 0 {
			continue
		}
		h.mu.Lock()
		for s := range f.subs {
			s.push(wr.Events)
		}
		h.mu.Unlock()
	}
	h.mu.Lock()
	if h.feeds[f.prefix] == f {
		delete(h.feeds, f.prefix)
	}
	for s := range f.subs {
		s.breakOff()
	}
	h.mu.Unlock()
	if !live {
		f.err = errRewatch
		close(f.ready)
	}
}

// live says whether the feed's watch is established.
func (f *feed) live() bool {
	select {
	case <-f.ready:
		return f.err == nil
	default:
		return false
	}
}

func (s *sub) push(evs []*clientv3.Event) {
	s.mu.Lock()
	s.events = append(s.events, evs...)
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (s *sub) breakOff() {
	s.mu.Lock()
	s.broken = true
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// next returns the events queued since the last call and the newest
// head announced since then, waiting for either; errRewatch once the feed
// broke.
func (s *sub) next(ctx context.Context) ([]*clientv3.Event, *lineHead, error) {
	for {
		s.mu.Lock()
		evs, head, broken := s.events, s.head, s.broken
		s.events, s.head = nil, nil
		s.mu.Unlock()
		switch {
		case len(evs) > 0 || head != nil:
			return evs, head, nil
		case broken:
			return nil, nil, errRewatch
		}
		select {
		case <-s.wake:
		case <-ctx.Done():
			return nil, nil, cause(ctx)
		}
	}
}

// acquire is Acquire through the hub. The order is what makes one read
// enough: subscribe to a live feed, then enqueue and read the whole line
// in one transaction at revision R; every delete after R reaches the
// subscription, and events up to R are skipped. When the feed is not live
// yet, the line is read again once it is (as in waitOnce).
func (h *Hub) acquire(ctx context.Context, cli *clientv3.Client, prefix string, lease clientv3.LeaseID, o options) (*Lock, error) {
	f, s := h.subscribe(prefix, o.limit)
	whole := f.live()
	l, ln, err := enqueue(ctx, cli, prefix, lease, o, whole)
	if err != nil || ln.owner {
		h.unsubscribe(f, s)
		return l, err
	}
	var before map[string]bool
	var from int64
	if whole {
		before, from = ln.before, ln.rev
	}
	if err := h.wait(ctx, l, o.limit, f, s, before, from); err != nil {
		l.abandon()
		return nil, err
	}
	return l, nil
}

// wait waits on the feed for l's turn, on a new feed and a new read of
// the line whenever one breaks (no leader, connection lost).
func (h *Hub) wait(ctx context.Context, l *Lock, limit int, f *feed, s *sub, before map[string]bool, from int64) error {
	backoff := 20 * time.Millisecond
	for {
		err := h.waitFeed(ctx, l, limit, f, s, before, from)
		h.unsubscribe(f, s)
		if !errors.Is(err, errRewatch) {
			return err
		}
		select {
		case <-ctx.Done():
			return cause(ctx)
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, time.Second)
		f, s = h.subscribe(l.prefix, limit)
		before = nil
	}
}

func (h *Hub) waitFeed(ctx context.Context, l *Lock, limit int, f *feed, s *sub, before map[string]bool, from int64) error {
	if before == nil {
		select {
		case <-f.ready:
		case <-ctx.Done():
			return cause(ctx)
		}
		if f.err != nil {
			return f.err
		}
		var err error
		if before, from, err = l.predecessors(ctx, f.rev); err != nil {
			return err
		}
	}
	err := l.waitLine(ctx, limit, before, from, func() ([]*clientv3.Event, error) {
		evs, head, err := s.next(ctx)
		if head.grants(l, limit) {
			return nil, errTurn
		}
		return evs, err
	})
	if errors.Is(err, errTurn) {
		return nil
	}
	return err
}
