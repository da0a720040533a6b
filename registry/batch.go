package registry

import (
	"context"
	"github.com/beaconhq/beacon/dataquota"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Limits of one batch: etcd takes at most 128 operations per transaction
// by default and 1.5 MiB per request.
const (
	batchMaxOps   = 64
	batchMaxBytes = 1 << 20
)

// Bounds of one batch's transaction and of undoing what it wrote for
// callers that gave up. Without quorum a transaction would otherwise wait
// for as long as the cluster is unreachable, and every batch behind it.
const (
	batchCommitTimeout = 10 * time.Second
	batchUndoTimeout   = 5 * time.Second
)

// createBatcher writes the first registrations of new instances in group
// commits: while one transaction is in flight, the next ones queue, and
// go together in the next (one raft proposal for many registrations).
// Each key must not exist yet; if any of a batch's keys does, or the
// transaction fails, the whole batch reports not-created and its callers
// take the individual path.
//
// A caller that gives up (its context ends) is answered with its
// context's error at once, and its key must then not stay written:
//   - a request whose caller gave up before its batch goes is dropped;
//   - a batch's transaction is bounded (batchCommitTimeout) and is
//     cancelled as soon as every one of its callers has given up, so a
//     transaction nobody waits for is not sent once etcd is back;
//   - a caller that gives up while its transaction is in flight may still
//     see it commit (a cancelled request may have reached etcd): its key
//     is then deleted again, if nothing wrote it since, before the next
//     batch goes. Only when that transaction's outcome is unknown (it
//     failed, and etcd may apply it later) or the delete fails can the
//     key outlive its caller; it belongs to this node and no registration
//     of it, so anti-entropy removes it on its next pass.
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

	// Under createBatcher.mu: exactly one of them becomes true. answered:
	// the result is on done and the caller takes it, whatever its context
	// does; abandoned: the caller returned its context's error.
	answered  bool
	abandoned bool
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
	}
	b.mu.Lock()
	if !req.answered {
		req.abandoned = true
		b.mu.Unlock()
		return 0, false, ctx.Err()
	}
	b.mu.Unlock()
	r := <-req.done // answered just now: the caller has not been told otherwise
	return r.rev, r.created, r.err
}

func (b *createBatcher) flush() {
	for {
		b.mu.Lock()
		// Requests whose callers gave up go no further.
		live := b.pending[:0]
		for _, r := range b.pending {
			if !r.abandoned && r.ctx.Err() == nil {
				live = append(live, r)
			}
		}
		clear(b.pending[len(live):])
		b.pending = live
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
	for _, r := range batch {
		cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(r.key), "=", 0))
		ops = append(ops, clientv3.OpPut(r.key, r.val, clientv3.WithLease(r.lease)))
	}
	// A caller's context lends its values, not its end: the transaction
	// lasts while any caller waits, and at most batchCommitTimeout. A
	// client's, if there is one, so the data quota judges the batch as
	// a client's write (refused, each goes its own way below).
	lend := batch[0].ctx
	for _, r := range batch {
		if dataquota.FromClient(r.ctx) {
			lend = r.ctx
			break
		}
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(lend), batchCommitTimeout)
	defer cancel()
	var waiting atomic.Int32
	waiting.Store(int32(len(batch)))
	for _, r := range batch {
		stop := context.AfterFunc(r.ctx, func() {
			if waiting.Add(-1) == 0 {
				cancel()
			}
		})
		defer stop()
	}
	resp, err := b.cli.Txn(ctx).If(cmps...).Then(ops...).Commit()

	var undo []string
	b.mu.Lock()
	for _, r := range batch {
		if r.abandoned {
			if err == nil && resp.Succeeded {
				undo = append(undo, r.key)
			}
			continue
		}
		r.answered = true
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
	b.mu.Unlock()
	if len(undo) > 0 {
		b.undo(batch[0].ctx, undo, resp.Header.Revision)
	}
}

// undo deletes keys a batch wrote at rev for callers that had already
// given up, each unless something wrote it since (a registration of the
// same instance, say). It runs before the next batch goes, so that
// batch's creates find the keys gone.
func (b *createBatcher) undo(vctx context.Context, keys []string, rev int64) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(vctx), batchUndoTimeout)
	defer cancel()
	for _, k := range keys {
		_, _ = b.cli.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(k), "=", rev)).Then(clientv3.OpDelete(k)).Commit()
	}
}
