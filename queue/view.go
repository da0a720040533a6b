package queue

import (
	"bytes"
	"container/list"
	"context"
	"crypto/sha256"
	"errors"
	"sort"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// view is one agent's picture of a queue's msg/ and res/ keys (never the
// payloads), loaded once and then kept current by a watch. Reserve picks
// candidates from it without reading etcd, and blocks on its change
// signal, never polling. It is only a hint: every decision taken from it
// is a transaction that compares the revisions it saw.
type view struct {
	b      *Broker
	k      keys
	ctx    context.Context
	cancel context.CancelFunc
	refs   int           // guarded by b.mu
	idle   *time.Timer   // guarded by b.mu
	idleAt *list.Element // on b.views.idle while refs == 0; guarded by b.mu

	mu        sync.Mutex
	loaded    chan struct{} // closed after the first load
	lastErr   error         // of the last load or watch, while failing
	rev       int64         // applied up to this revision
	want      int64         // picks wait until rev reaches it (see Broker.wrote)
	msgs      map[uint64]*entry
	order     []uint64 // sequence numbers ascending, from head; may hold removed ones
	head      int
	res       map[uint64]resState
	dead      map[uint64]bool  // dead letters' sequence numbers (they hold back WithLast messages)
	gate      *gateState       // nil: no gate
	opener    bool             // runGate started (once the view has seen a gate)
	cfg       cfgState         // the config key a gate waits for (gate_open.go)
	attempted map[uint64]state // candidates tried in the state they were tried in
	changed   chan struct{}    // closed and replaced on every change
}

// contents is what a view holds of etcd, as one reload reads it.
type contents struct {
	msgs  map[uint64]*entry
	res   map[uint64]resState
	dead  map[uint64]bool
	gate  *gateState
	added func(uint64) // told of a new message
}

type gateState struct {
	rec gateRecord
	mod int64 // mod revision of the gate key
	// The SHA-256 of a key gate's value: the view keeps only the sum of
	// the config key's value (cfgState), not a copy per gated queue.
	valueSum [sha256.Size]byte
}

type entry struct {
	m   meta
	mod int64 // mod revision of msg/<seq>
}

type resState struct {
	r           reservation
	create, mod int64
	lease       clientv3.LeaseID
}

// state is what a transaction on a candidate compares; a candidate is
// not tried twice in the same state, since the first try proved the view
// stale (or won, and the watch will say so).
// The gate's revision is part of it (a gate closed under a stale view
// fails the try, and opening it again must let the message be tried), and
// so is the view's revision for a WithLast message (a try fails on any
// message pushed since).
type state struct{ msgMod, resMod, gateMod, lastRev int64 }

func newView(b *Broker, queue string) *view {
	ctx, cancel := context.WithCancel(b.ctx)
	v := &view{b: b, k: b.keys(queue), ctx: ctx, cancel: cancel, loaded: make(chan struct{}),
		msgs: map[uint64]*entry{}, res: map[uint64]resState{}, dead: map[uint64]bool{}, attempted: map[uint64]state{}, changed: make(chan struct{})}
	go v.run()
	return v
}

func (v *view) run() {
	backoff := 100 * time.Millisecond
	for v.ctx.Err() == nil {
		rev, err := v.reload(v.ctx)
		if err == nil {
			backoff = 100 * time.Millisecond
			err = v.follow(rev + 1)
		}
		if v.ctx.Err() != nil {
			return
		}
		v.mu.Lock()
		v.lastErr = err
		v.mu.Unlock()
		v.b.lg.Debug("queue view restarting", zap.String("queue", v.k.queue), zap.Error(err))
		select {
		case <-v.ctx.Done():
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

// follow applies the watch from rev on until it fails (compaction, lost
// leader, closed client).
func (v *view) follow(rev int64) error {
	ctx, cancel := context.WithCancel(clientv3.WithRequireLeader(v.ctx))
	defer cancel()
	start, end := v.k.followRange()
	for resp := range v.b.cli.Watch(ctx, start, clientv3.WithRange(end), clientv3.WithRev(rev)) {
		if err := resp.Err(); err != nil {
			return err
		}
		if resp.Canceled {
			return errors.New("watch canceled")
		}
		v.apply(resp.Events)
	}
	return errors.New("watch ended")
}

// reload reads both ranges at one revision and replaces the view if that
// revision is newer than what it holds.
func (v *view) reload(ctx context.Context) (int64, error) {
	start, end := v.k.followRange()
	resp, err := v.b.cli.Get(ctx, start, clientv3.WithRange(end))
	if err != nil {
		return 0, err
	}
	var order []uint64
	c := contents{msgs: map[uint64]*entry{}, res: map[uint64]resState{}, dead: map[uint64]bool{},
		added: func(seq uint64) { order = append(order, seq) }}
	for _, kv := range resp.Kvs {
		v.put(&c, kv)
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if resp.Header.Revision > v.rev {
		v.msgs, v.res, v.dead, v.gate, v.order, v.head, v.rev = c.msgs, c.res, c.dead, c.gate, order, 0, resp.Header.Revision
		v.startOpener()
		v.lastErr = nil
		v.signal()
	}
	select {
	case <-v.loaded:
	default:
		close(v.loaded)
	}
	return resp.Header.Revision, nil
}

// put records one gate, dead/, msg/ or res/ key; dedup/ keys are not
// the view's business.
func (v *view) put(c *contents, kv *mvccpb.KeyValue) {
	if string(kv.Key) == v.k.gate() {
		g := &gateState{rec: readGate(kv.Value), mod: kv.ModRevision}
		if g.rec.HasValue {
			g.valueSum = sha256.Sum256(g.rec.Value)
		}
		c.gate = g
		return
	}
	seq, ok := seqOf(kv.Key)
	if !ok {
		return
	}
	switch {
	case bytes.HasPrefix(kv.Key, []byte(v.k.deadPrefix())):
		c.dead[seq] = true
	case bytes.HasPrefix(kv.Key, []byte(v.k.msgPrefix())):
		m, err := decodeMeta(kv.Value)
		if err != nil {
			v.b.lg.Warn("skipping an unreadable queue message", zap.ByteString("key", kv.Key), zap.Error(err))
			return
		}
		if _, ok := c.msgs[seq]; !ok {
			c.added(seq)
		}
		c.msgs[seq] = &entry{m: m, mod: kv.ModRevision}
	case bytes.HasPrefix(kv.Key, []byte(v.k.resPrefix())):
		r, err := decodeReservation(kv.Value)
		if err != nil {
			v.b.lg.Warn("skipping an unreadable reservation", zap.ByteString("key", kv.Key), zap.Error(err))
			return
		}
		c.res[seq] = resState{r: r, create: kv.CreateRevision, mod: kv.ModRevision, lease: clientv3.LeaseID(kv.Lease)}
	}
}

func (v *view) apply(events []*clientv3.Event) {
	v.mu.Lock()
	defer v.mu.Unlock()
	from, rev := v.rev, v.rev
	for _, ev := range events {
		if ev.Kv.ModRevision <= from {
			continue // a reload already holds it
		}
		rev = max(rev, ev.Kv.ModRevision)
		if ev.Type == clientv3.EventTypePut {
			c := contents{msgs: v.msgs, res: v.res, dead: v.dead, gate: v.gate, added: v.insert}
			v.put(&c, ev.Kv)
			v.gate = c.gate
			v.startOpener()
			continue
		}
		if string(ev.Kv.Key) == v.k.gate() {
			v.gate = nil
			continue
		}
		seq, ok := seqOf(ev.Kv.Key)
		if !ok {
			continue
		}
		switch {
		case bytes.HasPrefix(ev.Kv.Key, []byte(v.k.msgPrefix())):
			delete(v.msgs, seq)
			delete(v.attempted, seq)
		case bytes.HasPrefix(ev.Kv.Key, []byte(v.k.deadPrefix())):
			delete(v.dead, seq)
		case bytes.HasPrefix(ev.Kv.Key, []byte(v.k.resPrefix())):
			delete(v.res, seq)
		}
	}
	if rev > v.rev {
		v.rev = rev
		v.lastErr = nil
		v.signal()
	}
}

// insert adds a new sequence number to the order. New messages arrive in
// sequence order (the sequence key serialises enqueues), so this is an
// append but for odd cases.
func (v *view) insert(seq uint64) {
	n := len(v.order)
	if n == v.head || v.order[n-1] < seq {
		v.order = append(v.order, seq)
		return
	}
	i := v.head + sort.Search(n-v.head, func(i int) bool { return v.order[v.head+i] >= seq })
	if i < n && v.order[i] == seq {
		return
	}
	v.order = append(v.order, 0)
	copy(v.order[i+1:], v.order[i:])
	v.order[i] = seq
}

func (v *view) signal() {
	close(v.changed)
	v.changed = make(chan struct{})
}

// compact drops removed messages from the front of the order, and
// rebuilds it when holes (messages acked out of order) dominate.
func (v *view) compact() {
	for v.head < len(v.order) && v.msgs[v.order[v.head]] == nil {
		v.head++
	}
	if live := len(v.order) - v.head; v.head > 1024 && v.head > live || live > 2*len(v.msgs)+1024 {
		order := make([]uint64, 0, len(v.msgs))
		for _, seq := range v.order[v.head:] {
			if v.msgs[seq] != nil {
				order = append(order, seq)
			}
		}
		v.order, v.head = order, 0
	}
}

// wrote tells the queue's view (if any) that this agent changed the queue
// at rev, so that its next pick waits until the watch has brought that
// change: a consumer that nacks and reserves again gets the nacked message
// back in its place, not the one behind it.
func (b *Broker) wrote(queue string, rev int64) {
	b.mu.Lock()
	v := b.views.lookup(queue)
	b.mu.Unlock()
	if v != nil {
		v.mu.Lock()
		v.want = max(v.want, rev)
		v.mu.Unlock()
	}
}

// waitLoaded waits for the first load.
func (v *view) waitLoaded(ctx context.Context) error {
	select {
	case <-v.loaded:
		return nil
	case <-ctx.Done():
		v.mu.Lock()
		defer v.mu.Unlock()
		if v.lastErr != nil {
			return v.lastErr
		}
		return ctx.Err()
	}
}
