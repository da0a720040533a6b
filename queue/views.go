package queue

import (
	"container/list"
	"context"
	"fmt"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// DefaultMaxViews is how many queues one agent follows at once by default
// (max-queue-views): each followed queue costs an etcd watcher and two
// goroutines, and a large host's consumers use far fewer queue names.
const DefaultMaxViews = 1024

// viewIdle is how long a queue's watch-fed view outlives its last user, so
// that a consumer calling Reserve in a loop keeps one watch.
const viewIdle = time.Minute

// views are the queues this agent follows, at most max of them. A view in
// use (a call holds it) stays; an idle one stays viewIdle after its last
// use, or until a new queue needs its place: the least recently used idle
// view makes room. All fields are guarded by Broker.mu.
type views struct {
	byName map[string]*view
	idle   *list.List // of *view, least recently released first
	max    int
}

func newViews(max int) views {
	return views{byName: map[string]*view{}, idle: list.New(), max: max}
}

// lookup is the queue's view if it has one; the caller holds Broker.mu.
func (vs *views) lookup(queue string) *view { return vs.byName[queue] }

// acquire returns the queue's view, starting it if needed; release it when
// done. At max-queue-views with every view in use it refuses
// (ErrTooManyViews) rather than serve without a view: the calls that need
// one wait on the queue's changes, which without a watch would mean
// polling etcd, and a client able to hold max views busy at once can
// already hold that many watches.
func (b *Broker) acquire(queue string) (*view, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	vs := &b.views
	v := vs.byName[queue]
	if v == nil {
		if len(vs.byName) >= vs.max {
			oldest := vs.idle.Front()
			if oldest == nil {
				return nil, fmt.Errorf("queue %q: this agent follows %d queues, each with a call waiting on it: its limit (max-queue-views %d): %w",
					queue, len(vs.byName), vs.max, ErrTooManyViews)
			}
			b.drop(oldest.Value.(*view))
		}
		v = newView(b, queue)
		vs.byName[queue] = v
	}
	v.refs++
	v.busy()
	return v, nil
}

// release ends a use of v; the last one starts its idle time.
func (b *Broker) release(v *view) {
	b.mu.Lock()
	defer b.mu.Unlock()
	v.refs--
	if v.refs > 0 {
		return
	}
	v.idleAt = b.views.idle.PushBack(v)
	v.idle = time.AfterFunc(viewIdle, func() {
		b.mu.Lock()
		defer b.mu.Unlock()
		if v.refs == 0 && b.views.byName[v.k.queue] == v {
			b.drop(v)
		}
	})
}

// drop stops an idle view and forgets it; the caller holds Broker.mu.
func (b *Broker) drop(v *view) {
	v.busy()
	delete(b.views.byName, v.k.queue)
	v.cancel()
}

// busy takes v off the idle list and stops its idle timer; the caller
// holds Broker.mu.
func (v *view) busy() {
	if v.idleAt != nil {
		v.b.views.idle.Remove(v.idleAt)
		v.idleAt = nil
	}
	if v.idle != nil {
		v.idle.Stop()
		v.idle = nil
	}
}

// hasMessages answers, with one count-only read, whether the queue holds
// any message (ready, reserved or delayed). A Reserve that would not wait
// asks it before starting a view for a queue this agent does not follow,
// so that names never used (or emptied) cost no watch: a client asking
// about thousands of such names makes no views at all.
func (b *Broker) hasMessages(ctx context.Context, k keys) (bool, error) {
	resp, err := b.cli.Get(ctx, k.msgPrefix(), clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		return false, err
	}
	return resp.Count > 0, nil
}

// following reports whether this agent has a view of the queue.
func (b *Broker) following(queue string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.views.lookup(queue) != nil
}
