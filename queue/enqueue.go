package queue

import (
	"context"
	"fmt"
	"github.com/beaconhq/beacon/dataquota"
	"strconv"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Batches of concurrent Enqueues to one queue go to etcd in one
// transaction: 1 + 3 ops per message stays under etcd's default limit of
// 128 ops, and the payload cap under its 1.5 MiB request limit.
const (
	maxBatch      = 32
	maxBatchBytes = MaxPayload
)

// EnqueueOption configures Enqueue.
type EnqueueOption func(*enqueueReq)

// WithDedup makes a second Enqueue with the same id within window add
// nothing and answer the first message's id.
func WithDedup(id string, window time.Duration) EnqueueOption {
	return func(r *enqueueReq) { r.dedup, r.window = id, window }
}

// WithDelay makes the message ready only after d.
func WithDelay(d time.Duration) EnqueueOption { return func(r *enqueueReq) { r.delay = d } }

type enqueueReq struct {
	ctx     context.Context
	payload []byte
	dedup   string
	window  time.Duration
	delay   time.Duration
	last    bool
	done    chan struct{}
	id      string
	dup     bool
	err     error
}

// Enqueue appends payload to the queue and returns the message's id, and
// whether it was a duplicate of an earlier dedup id (then the id is the
// earlier message's and nothing was added).
func (b *Broker) Enqueue(ctx context.Context, queue string, payload []byte, opts ...EnqueueOption) (id string, duplicate bool, err error) {
	r := &enqueueReq{ctx: ctx, payload: payload, window: DefaultDedupWindow, done: make(chan struct{})}
	for _, o := range opts {
		o(r)
	}
	if err := validateEnqueue(queue, r); err != nil {
		return "", false, err
	}
	b.producer(queue).submit(r)
	select {
	case <-r.done:
		return r.id, r.dup, r.err
	case <-ctx.Done():
		// It may still be committed: at-least-once holds for producers too.
		return "", false, ctx.Err()
	}
}

func validateEnqueue(queue string, r *enqueueReq) error {
	if err := ValidateName(queue); err != nil {
		return err
	}
	if len(r.payload) > MaxPayload {
		return &FieldError{Field: "payload", Msg: fmt.Sprintf("%d bytes is over the limit of %d (1 MiB)", len(r.payload), MaxPayload)}
	}
	if r.dedup != "" {
		if len(r.dedup) > 256 {
			return &FieldError{Field: "dedup_id", Msg: "longer than 256 bytes"}
		}
		if err := validateDuration("dedup_window", r.window, time.Second); err != nil {
			return err
		}
	}
	return validateDuration("delay", r.delay, 0)
}

// producer commits one queue's enqueues. It caches the queue's last
// sequence number and the revision of its key, so that a commit is one
// round trip unless another agent enqueued meanwhile.
type producer struct {
	b *Broker
	k keys

	mu      sync.Mutex
	pending []*enqueueReq
	running bool
	used    time.Time

	seq    uint64 // owned by the running loop
	seqRev int64
}

func (b *Broker) producer(queue string) *producer {
	b.mu.Lock()
	defer b.mu.Unlock()
	p, ok := b.producers[queue]
	if !ok {
		if len(b.producers) >= 1024 {
			b.sweepProducers()
		}
		p = &producer{b: b, k: b.keys(queue)}
		b.producers[queue] = p
	}
	p.mu.Lock()
	p.used = time.Now()
	p.mu.Unlock()
	return p
}

// sweepProducers forgets queues not enqueued to for a minute, so that an
// agent serving many short-lived queues keeps a bounded cache. b.mu held.
func (b *Broker) sweepProducers() {
	for q, p := range b.producers {
		p.mu.Lock()
		idle := !p.running && time.Since(p.used) > time.Minute
		p.mu.Unlock()
		if idle {
			delete(b.producers, q)
		}
	}
}

func (p *producer) submit(r *enqueueReq) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.pending = append(p.pending, r)
	if !p.running {
		p.running = true
		go p.loop()
	}
}

// loop commits what is pending, batch after batch: requests arriving
// while a commit is in flight ride on the next one.
func (p *producer) loop() {
	for {
		p.mu.Lock()
		var batch []*enqueueReq
		size := 0
		for len(p.pending) > 0 && len(batch) < maxBatch {
			r := p.pending[0]
			if len(batch) > 0 && size+len(r.payload) > maxBatchBytes {
				break
			}
			p.pending = p.pending[1:]
			if r.ctx.Err() != nil {
				r.finish("", false, r.ctx.Err())
				continue
			}
			batch = append(batch, r)
			size += len(r.payload)
		}
		if len(batch) == 0 {
			p.running = false
			p.pending = nil
			p.mu.Unlock()
			return
		}
		p.mu.Unlock()
		p.commit(batch)
	}
}

func (r *enqueueReq) finish(id string, dup bool, err error) {
	r.id, r.dup, r.err = id, dup, err
	close(r.done)
}

// commit writes a batch in one transaction guarded by the sequence key's
// revision and by the absence of each dedup record; on a conflict the
// transaction's else branch brings what changed, and it tries again.
func (p *producer) commit(batch []*enqueueReq) {
	for attempt := 0; len(batch) > 0; attempt++ {
		// The first of several requests with one dedup id carries it; the
		// others become its duplicates below.
		first := map[string]*enqueueReq{}
		var fresh, dups []*enqueueReq
		for _, r := range batch {
			if r.dedup != "" && first[r.dedup] != nil {
				dups = append(dups, r)
				continue
			}
			if r.dedup != "" {
				first[r.dedup] = r
			}
			fresh = append(fresh, r)
		}
		now := time.Now()
		cmps := []clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(p.k.seq()), "=", p.seqRev)}
		ops := []clientv3.Op{clientv3.OpPut(p.k.seq(), strconv.FormatUint(p.seq+uint64(len(fresh)), 10))}
		orElse := []clientv3.Op{clientv3.OpGet(p.k.seq())}
		var leaseErr error
		for i, r := range fresh {
			seq := p.seq + 1 + uint64(i)
			m := meta{Enqueued: now.UnixNano(), Dedup: r.dedup, Last: r.last}
			if r.delay > 0 {
				m.NotBefore = now.Add(r.delay).UnixNano()
			}
			ops = append(ops, clientv3.OpPut(p.k.msg(seq), encode(m)), clientv3.OpPut(p.k.body(seq), string(r.payload)))
			if r.dedup != "" {
				lease, err := p.b.leases.get(r.ctx, now, r.window)
				if err != nil {
					leaseErr = err
					break
				}
				cmps = append(cmps, clientv3.Compare(clientv3.Version(p.k.dedup(r.dedup)), "=", 0))
				ops = append(ops, clientv3.OpPut(p.k.dedup(r.dedup), strconv.FormatUint(seq, 10), clientv3.WithLease(lease)))
				orElse = append(orElse, clientv3.OpGet(p.k.dedup(r.dedup)))
			}
		}
		if leaseErr != nil {
			failAll(batch, leaseErr)
			return
		}
		// Judged by the data quota as its callers' writes (their calls'
		// class), though committed on the producer's context.
		ctx, cancel := context.WithTimeout(dataquota.As(p.b.ctx, batch[0].ctx), 10*time.Second)
		resp, err := p.b.cli.Txn(ctx).If(cmps...).Then(ops...).Else(orElse...).Commit()
		cancel()
		if err != nil {
			if leaseGone(err) && attempt < 3 {
				p.b.leases.forget()
				continue
			}
			failAll(batch, err)
			return
		}
		if resp.Succeeded {
			p.seq += uint64(len(fresh))
			p.seqRev = resp.Header.Revision
			for i, r := range fresh {
				r.finish(strconv.FormatUint(p.seq-uint64(len(fresh))+1+uint64(i), 10), false, nil)
			}
			for _, r := range dups {
				<-first[r.dedup].done
				r.finish(first[r.dedup].id, true, first[r.dedup].err)
			}
			return
		}
		// Learn the sequence and which dedup ids exist; answer those, retry
		// the rest.
		p.seq, p.seqRev = 0, 0
		if kvs := resp.Responses[0].GetResponseRange().Kvs; len(kvs) > 0 {
			p.seq, _ = strconv.ParseUint(string(kvs[0].Value), 10, 64)
			p.seqRev = kvs[0].ModRevision
		}
		taken := map[string]string{}
		for _, rr := range resp.Responses[1:] {
			if kvs := rr.GetResponseRange().Kvs; len(kvs) > 0 {
				taken[string(kvs[0].Key[len(p.k.dedup("")):])] = string(kvs[0].Value)
			}
		}
		var rest []*enqueueReq
		for _, r := range batch {
			if id, ok := taken[r.dedup]; ok && r.dedup != "" {
				r.finish(id, true, nil)
				continue
			}
			rest = append(rest, r)
		}
		batch = rest
	}
}

func failAll(batch []*enqueueReq, err error) {
	for _, r := range batch {
		r.finish("", false, err)
	}
}
