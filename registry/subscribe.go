package registry

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/beaconhq/beacon/internal/fanout"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// EventType says what happened to an instance.
type EventType int

// Event types.
const (
	EventPut EventType = iota + 1
	EventDelete
)

// Event is one change in the catalog, at the revision it happened.
type Event struct {
	Type     EventType
	Instance *Instance
	Revision int64
}

// subscriptionBuffer is how many changes a subscriber may leave unread:
// the same bound as the API's other watches (internal/fanout), so that a
// reader that stops reading costs the agent a bounded buffer, released
// when it is cut off. The catalog's WatchBufferBytes bounds the bytes of
// those changes too (an instance may carry 64 KiB of meta: 4,096 of them
// would be 256 MiB).
const subscriptionBuffer = fanout.DefaultLimit

// ErrWatchBehind: the watcher left more than subscriptionBuffer changes,
// or the catalog's WatchBufferBytes bytes of changes, unread and was cut
// off; its buffer is dropped. It is a gRPC status of its own
// (RESOURCE_EXHAUSTED), so a handler may return it as it is; the error a
// subscription ends with names the bound it passed, and errors.Is it
// ErrWatchBehind.
var ErrWatchBehind error = watchBehind{limit: fanout.LimitEvents, value: subscriptionBuffer}

type watchBehind struct {
	limit string // fanout.LimitEvents or fanout.LimitBytes
	value int64
}

func (e watchBehind) Error() string {
	unread := fmt.Sprintf("%d changes", e.value)
	if e.limit == fanout.LimitBytes {
		unread = fmt.Sprintf("%d bytes of changes", e.value)
	}
	return fmt.Sprintf("registry: this watcher left more than %s unread (%s %d) and was cut off; read faster, or watch again for a fresh snapshot",
		unread, e.limit, e.value)
}

// Is makes every watchBehind ErrWatchBehind to errors.Is.
func (watchBehind) Is(target error) bool { _, ok := target.(watchBehind); return ok }

// GRPCCode is the code rpcerr maps it to.
func (watchBehind) GRPCCode() codes.Code { return codes.ResourceExhausted }

// GRPCStatus is the status gRPC sends for it.
func (e watchBehind) GRPCStatus() *status.Status {
	return status.New(codes.ResourceExhausted, e.Error())
}

// Subscription receives the catalog's changes for the instances that match
// its filter. An instance that stops matching (say, turns critical under a
// healthy-only filter) arrives as a delete.
type Subscription struct {
	match func(*Instance) bool
	ch    chan Event
	// cut is closed when the subscription ends as lagged: a forwarder
	// whose send is blocked on a reader that does not read hears of it.
	cut chan struct{}
	// ended is closed with the subscription: its sender stops.
	ended chan struct{}
	// behind is the bound a cut subscription passed (set before cut
	// closes); bytes are the bytes of its changes queued (Forward gives
	// them back as it takes them), maxBytes its bound.
	behind   watchBehind
	bytes    atomic.Int64
	maxBytes int64
	seen     map[string]bool // service/id of the instances the subscriber holds
	closed   bool

	// The sender: the goroutine Send hands its sends to, started by the
	// first; owned by the goroutine that calls Send.
	sends chan func() error
	sent  chan error
}

// Events delivers changes in revision order. It is closed when the
// subscription is cancelled or the subscriber fell behind (lagged).
func (s *Subscription) Events() <-chan Event { return s.ch }

// lagged reports whether the subscription ended because its reader fell
// more than subscriptionBuffer events behind.
func (s *Subscription) lagged() bool {
	select {
	case <-s.cut:
		return true
	default:
		return false
	}
}

// Err is why the subscription ended: ErrWatchBehind (naming the bound)
// if its reader fell behind, nil if it was unsubscribed or lives.
func (s *Subscription) Err() error {
	if s.lagged() {
		return s.behind
	}
	return nil
}

// Subscribe returns the matching instances now, the revision they reflect,
// and a subscription for every change after it.
func (c *Catalog) Subscribe(match func(*Instance) bool) ([]*Instance, int64, *Subscription) {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := &Subscription{match: match, ch: make(chan Event, subscriptionBuffer), cut: make(chan struct{}),
		ended: make(chan struct{}), seen: map[string]bool{}, maxBytes: c.watchBufferBytes()}
	var snap []*Instance
	for _, e := range c.services {
		for _, in := range e.byID {
			if match(in) {
				snap = append(snap, in)
				s.seen[in.Service+"/"+in.ID] = true
			}
		}
	}
	c.subs[s] = struct{}{}
	watchers.add(s)
	return snap, c.rev, s
}

// Unsubscribe ends a subscription.
func (c *Catalog) Unsubscribe(s *Subscription) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.endLocked(s)
}

func (c *Catalog) endLocked(s *Subscription) {
	if !s.closed {
		s.closed = true
		close(s.ch)
		close(s.ended)
		delete(c.subs, s)
		watchers.remove(s)
	}
}

// cutLocked ends a subscriber that fell behind the bound why, and drops
// what it had queued and what it knew, so that a reader that never reads
// holds none of the agent's memory while its stream winds down.
func (c *Catalog) cutLocked(s *Subscription, why watchBehind) {
	// cut before the end, so that whoever sees the end sees it as a cut.
	s.behind = why
	close(s.cut)
	fanout.CountCutOff(why.limit)
	c.endLocked(s)
	s.seen = nil
	for range s.ch { // closed: this ends once the buffer is empty
	}
	s.bytes.Store(0)
}

// publishLocked hands events to every subscriber, never blocking: a full
// subscriber is cut off.
func (c *Catalog) publishLocked(events []Event) {
	for s := range c.subs {
		for _, ev := range events {
			key := ev.Instance.Service + "/" + ev.Instance.ID
			out := ev
			switch {
			case ev.Type == EventPut && s.match(ev.Instance):
				s.seen[key] = true
			case s.seen[key]:
				delete(s.seen, key)
				out.Type = EventDelete
			default:
				continue
			}
			// A change over the byte bound still goes to an empty queue:
			// one change is never refused for its size alone.
			size := instanceBytes(out.Instance)
			if len(s.ch) > 0 && s.bytes.Load()+size > s.maxBytes {
				c.cutLocked(s, watchBehind{limit: fanout.LimitBytes, value: s.maxBytes})
				break
			}
			select {
			case s.ch <- out:
				s.bytes.Add(size)
			default:
				c.cutLocked(s, ErrWatchBehind.(watchBehind))
			}
			if s.closed {
				break
			}
		}
	}
}

// Forward hands the subscription's changes to send, one at a time and in
// order, through Send, until ctx ends (its error), send fails (its
// error), the reader falls behind (ErrWatchBehind) or the subscription is
// cancelled (nil).
func (s *Subscription) Forward(ctx context.Context, send func(Event) error) error {
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-s.cut:
			return s.behind
		case ev, ok := <-s.ch:
			if !ok {
				return s.Err()
			}
			s.bytes.Add(-instanceBytes(ev.Instance))
			if err := s.Send(ctx, func() error { return send(ev) }); err != nil {
				return err
			}
		}
	}
}

// Send runs send (a gRPC stream's Send, say) and returns its error, or
// returns at once, with ErrWatchBehind, when the subscription is cut off
// while send is blocked; likewise with ctx's error. Sends run in order on
// a goroutine of the subscription's: a send blocked on a reader that does
// not read (gRPC's flow control) must not keep the watcher's handler,
// and what it holds (a snapshot, a message), waiting. The handler
// returns, which ends the stream, and the blocked send with it. Call Send
// from one goroutine at a time.
func (s *Subscription) Send(ctx context.Context, send func() error) error {
	if s.sends == nil {
		s.sends, s.sent = make(chan func() error), make(chan error, 1)
		go s.sender()
	}
	select {
	case s.sends <- send:
	case <-s.cut:
		return s.behind
	case <-s.ended:
		if s.lagged() {
			return s.behind
		}
		return errUnsubscribed
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-s.sent:
		return err
	case <-s.cut:
		return s.behind
	case <-ctx.Done():
		return ctx.Err()
	}
}

// errUnsubscribed: Send after the subscription ended.
var errUnsubscribed = errors.New("registry: the subscription has ended")

// sender runs the sends until the subscription ends (then a send in
// flight finishes first: its stream's end ends it).
func (s *Subscription) sender() {
	for {
		select {
		case send := <-s.sends:
			s.sent <- send() // capacity 1, and one send at a time
		case <-s.ended:
			return
		}
	}
}

// watchers counts the live subscriptions of the process and what they
// have queued, for /metrics.
var watchers = newWatcherSet()

type watcherSet struct {
	mu   sync.Mutex
	subs map[*Subscription]struct{}
}

func newWatcherSet() *watcherSet {
	w := &watcherSet{subs: map[*Subscription]struct{}{}}
	prometheus.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "beacon_registry_watchers",
			Help: "Registry watch subscriptions open."}, func() float64 { n, _ := w.counts(); return float64(n) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "beacon_registry_watch_buffered_events",
			Help: "Changes queued for registry watchers, not yet sent."}, func() float64 { _, q := w.counts(); return float64(q) }),
	)
	return w
}

func (w *watcherSet) add(s *Subscription) {
	w.mu.Lock()
	w.subs[s] = struct{}{}
	w.mu.Unlock()
}

func (w *watcherSet) remove(s *Subscription) {
	w.mu.Lock()
	delete(w.subs, s)
	w.mu.Unlock()
}

func (w *watcherSet) counts() (subs, queued int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for s := range w.subs {
		queued += len(s.ch)
	}
	return len(w.subs), queued
}
