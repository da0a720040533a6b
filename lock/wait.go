package lock

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// errRewatch: the watch broke (no leader, stream reset); set it up again.
var errRewatch = errors.New("watch interrupted")

// waitTurn blocks until fewer than limit keys were created before l's
// key, which then holds the lock (or a slot of the semaphore).
//
// Why it is fast: the watch is opened at the current revision, so etcd
// adds it to its synced watchers and sends a delete the moment it commits.
// concurrency.Mutex watches from the revision of an earlier read, which
// makes the watcher unsynced whenever anything was written since (always,
// under contention), and unsynced watchers are caught up by a loop that
// runs every 100 ms. A handoff here is one commit (the release) and one
// watch event.
//
// Why it is correct: the predecessors are read after the watch exists, so
// no delete falls between the read and the watch; events up to the read's
// revision are already in it and are skipped; keys created later have
// larger create revisions and never count.
//
// Why no read follows the wait, and yet a waiter whose lease ended is
// never told it holds the lock: the watch sees every key of the line,
// l's own included, and etcd sends events in revision order without
// splitting a revision across responses. If l's lease ended (etcd deleted
// its key) before the last needed predecessor left, that delete arrives
// first, or in the same response, and the wait fails with ErrLost. If the
// lease ended after, l did hold the lock, at that revision: the grant was
// lost, not the wait, which is what Watch and fencing are for. A read
// after the event would only move that moment by a round trip, and cost
// one on every handoff. The watch requires a leader, so a member cut off
// from the cluster cannot feed an old history.
func waitTurn(ctx context.Context, l *Lock, limit int) error {
	backoff := 20 * time.Millisecond
	for {
		err := waitOnce(ctx, l, limit)
		if !errors.Is(err, errRewatch) {
			return err
		}
		select {
		case <-ctx.Done():
			return cause(ctx)
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, time.Second)
	}
}

func waitOnce(ctx context.Context, l *Lock, limit int) error {
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	// Deletes only: a waiter cares about keys leaving the line.
	wch := l.cli.Watch(wctx, l.prefix+"/", clientv3.WithPrefix(), clientv3.WithFilterPut(), clientv3.WithCreatedNotify())
	created, err := watchCreated(ctx, wch)
	if err != nil {
		return err
	}
	before, from, err := l.predecessors(ctx, created)
	if err != nil {
		return err
	}
	return l.waitLine(ctx, limit, before, from, func() ([]*clientv3.Event, error) {
		select {
		case wr, ok := <-wch:
			switch {
			case !ok && ctx.Err() != nil:
				return nil, cause(ctx)
			case !ok || wr.Err() != nil || wr.Canceled:
				return nil, errRewatch
			}
			return wr.Events, nil
		case <-ctx.Done():
			return nil, cause(ctx)
		}
	})
}

// waitLine takes deletes from next until fewer than limit of the keys in
// before remain. before is the line as read at revision from: events up to
// from are in it already, and are skipped (a key deleted and created again
// before from is in before under its new create revision, and its old
// delete must not count).
func (l *Lock) waitLine(ctx context.Context, limit int, before map[string]bool, from int64, next func() ([]*clientv3.Event, error)) error {
	for len(before) >= limit {
		evs, err := next()
		if err != nil {
			return err
		}
		for _, ev := range evs {
			if ev.Type != mvccpb.DELETE || ev.Kv.ModRevision <= from {
				continue
			}
			k := string(ev.Kv.Key)
			if k == l.Key {
				return fmt.Errorf("%w: %s was deleted while waiting (the session's lease ended)", ErrLost, l.Key)
			}
			delete(before, k)
		}
	}
	// No read after the wait: the events prove it (see waitTurn).
	return nil
}

// predecessors reads the keys created before l's, checking l's key is
// still there, and returns them with the revision of the read. The read
// must reflect at least revision atLeast (where the watch started), so
// that no delete falls between the two; a serializable read from a member
// that far along is enough, and skips a raft round.
func (l *Lock) predecessors(ctx context.Context, atLeast int64) (map[string]bool, int64, error) {
	read := func(opts ...clientv3.OpOption) (*clientv3.TxnResponse, error) {
		return l.cli.Txn(ctx).Then(
			clientv3.OpGet(l.Key, opts...),
			clientv3.OpGet(l.prefix+"/", append([]clientv3.OpOption{clientv3.WithPrefix(), clientv3.WithKeysOnly(),
				clientv3.WithMaxCreateRev(l.Token - 1)}, opts...)...),
		).Commit()
	}
	resp, err := read(clientv3.WithSerializable())
	if err == nil && resp.Header.Revision < atLeast {
		resp, err = read() // a member behind the watch's: ask for the leader's view
	}
	if err != nil {
		if ctx.Err() != nil {
			return nil, 0, cause(ctx)
		}
		return nil, 0, err
	}
	own := resp.Responses[0].GetResponseRange().Kvs
	if len(own) == 0 || own[0].CreateRevision != l.Token {
		return nil, 0, fmt.Errorf("%w: %s was deleted while waiting (the session's lease ended)", ErrLost, l.Key)
	}
	before := map[string]bool{}
	for _, kv := range resp.Responses[1].GetResponseRange().Kvs {
		before[string(kv.Key)] = true
	}
	return before, resp.Header.Revision, nil
}

// watchCreated waits for the watch's created notice and returns the
// revision it reports: every delete after it is delivered.
func watchCreated(ctx context.Context, wch clientv3.WatchChan) (int64, error) {
	select {
	case wr, ok := <-wch:
		if !ok {
			if ctx.Err() != nil {
				return 0, cause(ctx)
			}
			return 0, errRewatch
		}
		if wr.Err() != nil || !wr.Created {
			return 0, errRewatch
		}
		return wr.Header.Revision, nil
	case <-ctx.Done():
		return 0, cause(ctx)
	}
}

// cause is why ctx ended: the cause its canceller gave, or its error.
func cause(ctx context.Context) error {
	if c := context.Cause(ctx); c != nil {
		return c
	}
	return ctx.Err()
}
