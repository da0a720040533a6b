package registry

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

// subscriptionBuffer is how far a subscriber may fall behind before it is
// dropped; it then re-subscribes and starts from a fresh snapshot.
const subscriptionBuffer = 4096

// Subscription receives the catalog's changes for the instances that match
// its filter. An instance that stops matching (say, turns critical under a
// healthy-only filter) arrives as a delete.
type Subscription struct {
	match  func(*Instance) bool
	ch     chan Event
	seen   map[string]bool // service/id of the instances the subscriber holds
	closed bool
	lagged bool
}

// Events delivers changes in revision order. It is closed when the
// subscription is cancelled or the subscriber fell behind (Lagged).
func (s *Subscription) Events() <-chan Event { return s.ch }

// Lagged reports whether the subscription ended because its reader fell
// more than subscriptionBuffer events behind.
func (s *Subscription) Lagged() bool { return s.lagged }

// Subscribe returns the matching instances now, the revision they reflect,
// and a subscription for every change after it.
func (c *Catalog) Subscribe(match func(*Instance) bool) ([]*Instance, int64, *Subscription) {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := &Subscription{match: match, ch: make(chan Event, subscriptionBuffer), seen: map[string]bool{}}
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
		delete(c.subs, s)
	}
}

// publishLocked hands events to every subscriber, never blocking: a full
// subscriber is ended as lagged.
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
			select {
			case s.ch <- out:
			default:
				s.lagged = true
				c.endLocked(s)
			}
			if s.closed {
				break
			}
		}
	}
}
