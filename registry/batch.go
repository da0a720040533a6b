package registry

import (
	"context"
	"sync"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Limits of one batch: etcd takes at most 128 operations per transaction
// by default and 1.5 MiB per request.
const (
	batchMaxOps   = 64
	batchMaxBytes = 1 << 20
)

// createBatcher writes the first registrations of new instances in group
// commits: while one transaction is in flight, the next ones queue, and
// go together in the next (one raft proposal for many registrations).
// Each key must not exist yet; if any of a batch's keys does, or the
// transaction fails, the whole batch reports not-created and its callers
// take the individual path.
type createBatcher struct {
	cli *clientv3.Client

	mu      sync.Mutex
	pending []*createReq
	running bool
}

type createReq struct {
	ctx   context.Context
	key   string
	val   string
	lease clientv3.LeaseID
	done  chan createResult
}

type createResult struct {
	rev     int64
	created bool
	err     error
}

// create puts key if it does not exist, batched with concurrent creates.
func (b *createBatcher) create(ctx context.Context, key, val string, lease clientv3.LeaseID) (int64, bool, error) {
	req := &createReq{ctx: ctx, key: key, val: val, lease: lease, done: make(chan createResult, 1)}
	b.mu.Lock()
	b.pending = append(b.pending, req)
	if !b.running {
		b.running = true
		go b.flush()
	}
	b.mu.Unlock()
	select {
	case r := <-req.done:
		return r.rev, r.created, r.err
	case <-ctx.Done():
		// The batch may still commit it; the caller's error path (and
		// anti-entropy) treat the key as unknown either way.
		return 0, false, ctx.Err()
	}
}

func (b *createBatcher) flush() {
	for {
		b.mu.Lock()
		n, size := 0, 0
		for n < len(b.pending) && n < batchMaxOps && size+len(b.pending[n].val) <= batchMaxBytes {
			size += len(b.pending[n].val) + len(b.pending[n].key)
			n++
		}
		if n == 0 && len(b.pending) > 0 {
			n = 1 // one oversized value goes alone
		}
		batch := b.pending[:n:n]
		b.pending = b.pending[n:]
		if len(batch) == 0 {
			b.running = false
			b.mu.Unlock()
			return
		}
		b.mu.Unlock()
		b.commit(batch)
	}
}

func (b *createBatcher) commit(batch []*createReq) {
	cmps := make([]clientv3.Cmp, 0, len(batch))
	ops := make([]clientv3.Op, 0, len(batch))
	ctx := batch[0].ctx
	for _, r := range batch {
		cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(r.key), "=", 0))
		ops = append(ops, clientv3.OpPut(r.key, r.val, clientv3.WithLease(r.lease)))
		if r.ctx.Err() == nil {
			ctx = r.ctx // any live caller's context will do
		}
	}
	resp, err := b.cli.Txn(context.WithoutCancel(ctx)).If(cmps...).Then(ops...).Commit()
	for _, r := range batch {
		switch {
		case err != nil && len(batch) > 1:
			// One bad request (a lease revoked meanwhile) fails the whole
			// transaction: each goes its own way, and only it fails.
			r.done <- createResult{}
		case err != nil:
			r.done <- createResult{err: err}
		case resp.Succeeded:
			r.done <- createResult{rev: resp.Header.Revision, created: true}
		default:
			r.done <- createResult{}
		}
	}
}
