// Package fanout shares one etcd watch per key prefix among all the
// watchers of one process, so that the agent's API watchers (Config.Watch,
// Election.Observe) never open etcd watch streams of their own.
//
// Why: every API watch stream used to become an etcd watch, created and
// cancelled with it. A client opening and closing thousands of streams
// then drove thousands of creates and cancels through the agent's one
// etcd watch stream, which every other watch of the agent (the catalog's,
// the locks') shares; on the embedded member's in-process transport that
// deadlocked the stream for good. With a hub, a storm of API watchers is a
// storm of map inserts and deletes here: etcd sees one watch per prefix,
// opened by the first watcher and closed a while (Linger) after the last.
//
// What a subscriber gets: every event of the prefix with a revision above
// From, in revision order, in the batches etcd sent them (a revision is
// never split across batches). A subscriber that falls more than Limit
// events, or MaxBytes bytes of events, behind is dropped with ErrSlow (a
// *SlowError naming the bound), so that one slow reader can neither hold
// the feed up nor grow the process's memory without bound: a count alone
// let a reader of 1 MiB values hold 4 GiB.
package fanout

import (
	"context"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Defaults of a Hub.
const (
	DefaultLinger   = 10 * time.Second
	DefaultLimit    = 4096
	DefaultMaxBytes = 16 << 20
)

// Hub is the set of shared watches of one client.
type Hub struct {
	cli *clientv3.Client
	// Linger is how long a feed stays open without subscribers, for the
	// next one; Limit is how many events a subscriber may leave unread,
	// MaxBytes how many bytes of them (keys and values, the previous ones
	// included). Set them before the first Subscribe, or with SetLimits
	// (a hub of For is shared).
	Linger   time.Duration
	Limit    int
	MaxBytes int64

	mu      sync.Mutex
	feeds   map[string]*feed // by prefix
	started int              // feeds ever started, for tests
}

var (
	hubsMu sync.Mutex
	hubs   = map[*clientv3.Client]*Hub{}
)

// For returns the process's hub of cli, so that every package watching
// through the same client shares its feeds. The hub is forgotten when the
// client closes.
func For(cli *clientv3.Client) *Hub {
	hubsMu.Lock()
	defer hubsMu.Unlock()
	if h := hubs[cli]; h != nil {
		return h
	}
	h := New(cli)
	hubs[cli] = h
	context.AfterFunc(cli.Ctx(), func() {
		hubsMu.Lock()
		defer hubsMu.Unlock()
		if hubs[cli] == h {
			delete(hubs, cli)
		}
	})
	return h
}

// New returns a hub of its own on cli (For shares one per client).
func New(cli *clientv3.Client) *Hub {
	return &Hub{cli: cli, Linger: DefaultLinger, Limit: DefaultLimit, MaxBytes: DefaultMaxBytes, feeds: map[string]*feed{}}
}

// SetLimits sets Limit and MaxBytes (zero or less: the default); safe at
// any time, it holds for the events pushed after it.
func (h *Hub) SetLimits(events int, bytes int64) {
	if events <= 0 {
		events = DefaultLimit
	}
	if bytes <= 0 {
		bytes = DefaultMaxBytes
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.Limit, h.MaxBytes = events, bytes
}

// feed is one prefix's shared watch.
type feed struct {
	prefix string
	ready  chan struct{} // closed once the watch is live, or failed (err set)
	err    error         // why the watch never became live
	rev    int64         // every event after rev is yet to be pushed; guarded by Hub.mu
	cancel context.CancelFunc
	subs   map[*Sub]struct{} // guarded by Hub.mu
	idle   *time.Timer       // guarded by Hub.mu
}

// Sub is one subscriber's queue of a feed's events.
type Sub struct {
	h    *Hub
	f    *feed
	from int64 // set under Hub.mu before f.ready closes, or at subscription

	mu      sync.Mutex
	batches [][]*clientv3.Event
	sizes   []int64 // bytes of each batch
	queued  int     // events in batches
	bytes   int64   // bytes in batches
	err     error   // set once: a *SlowError or a *BrokenError
	wake    chan struct{}
	closed  bool
}

// Subscribe joins the feed of prefix (starting one if there is none) and
// waits until its watch is live. The error is ctx's, or a *BrokenError if
// the watch could not start (no raft leader, say).
func (h *Hub) Subscribe(ctx context.Context, prefix string) (*Sub, error) {
	h.mu.Lock()
	f := h.feeds[prefix]
	if f == nil {
		// The feed ends with the client: its context is the client's.
		wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(h.cli.Ctx()))
		f = &feed{prefix: prefix, ready: make(chan struct{}), cancel: cancel, subs: map[*Sub]struct{}{}}
		h.feeds[prefix] = f
		h.started++
		go h.run(wctx, f)
	}
	if f.idle != nil {
		f.idle.Stop()
		f.idle = nil
	}
	s := &Sub{h: h, f: f, from: f.rev, wake: make(chan struct{}, 1)}
	f.subs[s] = struct{}{}
	h.mu.Unlock()

	select {
	case <-f.ready:
	case <-ctx.Done():
		s.Close()
		return nil, ctx.Err()
	}
	if f.err != nil {
		s.Close()
		return nil, f.err
	}
	return s, nil
}

// run pushes the watch's events to the subscribers until the watch ends:
// cancelled once idle, or broken (then every subscriber gets a
// *BrokenError, and the next Subscribe starts a new feed).
func (h *Hub) run(ctx context.Context, f *feed) {
	defer f.cancel()
	wch := h.cli.Watch(ctx, f.prefix, clientv3.WithPrefix(), clientv3.WithCreatedNotify())
	live := false
	broken := &BrokenError{}
	for wr := range wch {
		if wr.CompactRevision != 0 {
			broken.CompactRevision = wr.CompactRevision
			break
		}
		if err := wr.Err(); err != nil || wr.Canceled {
			broken.Err = err
			break
		}
		if wr.Created && !live {
			// Every event after the revision the watch was created at
			// will come; subscribers waiting for the feed start there.
			h.mu.Lock()
			f.rev = wr.Header.Revision
			for s := range f.subs {
				s.from = f.rev
			}
			h.mu.Unlock()
			live = true
			close(f.ready)
			continue
		}
		if len(wr.Events) == 0 {
			continue
		}
		size := batchBytes(wr.Events)
		h.mu.Lock()
		f.rev = wr.Events[len(wr.Events)-1].Kv.ModRevision
		for s := range f.subs {
			s.push(wr.Events, size, h.Limit, h.MaxBytes)
		}
		h.mu.Unlock()
	}
	if broken.Err == nil && broken.CompactRevision == 0 && h.cli.Ctx().Err() != nil {
		broken.Err = ErrClosed
	}
	h.mu.Lock()
	if h.feeds[f.prefix] == f {
		delete(h.feeds, f.prefix)
	}
	for s := range f.subs {
		s.fail(broken)
	}
	h.mu.Unlock()
	if !live {
		f.err = broken
		close(f.ready)
	}
}

// From is the revision the subscription starts after: every event of the
// prefix above it reaches Next, none at or below it does.
func (s *Sub) From() int64 {
	s.h.mu.Lock()
	defer s.h.mu.Unlock()
	return s.from
}

// Next returns the next batch of events, waiting for one. The batch is
// shared with the other subscribers: read it, never change it. Once the
// subscription ends, Next returns ErrSlow (at once: what was queued is
// dropped; a *SlowError) or the feed's *BrokenError (after what was
// queued).
func (s *Sub) Next(ctx context.Context) ([]*clientv3.Event, error) {
	for {
		s.mu.Lock()
		if len(s.batches) > 0 {
			b := s.batches[0]
			s.batches[0] = nil
			s.batches = s.batches[1:]
			s.queued -= len(b)
			s.bytes -= s.sizes[0]
			s.sizes = s.sizes[1:]
			s.mu.Unlock()
			return b, nil
		}
		err := s.err
		s.mu.Unlock()
		if err != nil {
			return nil, err
		}
		select {
		case <-s.wake:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// Close leaves the feed; the last subscriber to leave starts its linger.
func (s *Sub) Close() {
	h, f := s.h, s.f
	h.mu.Lock()
	defer h.mu.Unlock()
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	s.batches, s.sizes, s.queued, s.bytes = nil, nil, 0, 0
	s.mu.Unlock()
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

// push queues a batch of size bytes, or drops the subscriber if that
// would leave more than limit events, or maxBytes bytes, unread. A batch
// over either bound is still taken by an empty queue: etcd never splits
// a revision, and a transaction may change more keys than limit.
func (s *Sub) push(evs []*clientv3.Event, size int64, limit int, maxBytes int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil || s.closed {
		return
	}
	var over *SlowError
	switch {
	case s.queued > 0 && s.queued+len(evs) > limit:
		over = &SlowError{Limit: LimitEvents, Value: int64(limit)}
	case s.queued > 0 && s.bytes+size > maxBytes:
		over = &SlowError{Limit: LimitBytes, Value: maxBytes}
	}
	if over != nil {
		CountCutOff(over.Limit)
		s.err = over
		s.batches, s.sizes, s.queued, s.bytes = nil, nil, 0, 0
	} else {
		s.batches = append(s.batches, evs)
		s.sizes = append(s.sizes, size)
		s.queued += len(evs)
		s.bytes += size
	}
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// batchBytes is what a batch of events holds: its keys and values, and
// the previous ones etcd sent with them, each with its structs.
func batchBytes(evs []*clientv3.Event) int64 {
	var n int64
	for _, ev := range evs {
		n += eventOverhead
		for _, kv := range []*mvccpb.KeyValue{ev.Kv, ev.PrevKv} {
			if kv != nil {
				n += kvOverhead + int64(len(kv.Key)+len(kv.Value))
			}
		}
	}
	return n
}

// eventOverhead, kvOverhead: about what an event's and a key-value's
// structs take besides their bytes.
const (
	eventOverhead = 32
	kvOverhead    = 96
)

func (s *Sub) fail(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err == nil {
		s.err = err
	}
	select {
	case s.wake <- struct{}{}:
	default:
	}
}
