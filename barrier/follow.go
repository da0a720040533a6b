package barrier

import (
	"context"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// follower is a participant's watch of its barrier. It is opened before
// the participant enters, from "now", so that etcd counts it among its
// synced watchers and sends it each change as it is committed. A watch
// opened later from a past revision (what the read that enters returns)
// would wait for etcd's catch-up loop, which runs every 100 ms: the trip
// would reach the participants that entered early up to 100 ms late.
// Events at or before the revision the participant read are in its read
// already, and are skipped.
type follower struct {
	b      *Barrier
	ctx    context.Context
	prefix string
	opts   []clientv3.OpOption
	ch     clientv3.WatchChan
	cancel context.CancelFunc
}

// follow opens the watch of the keys under prefix and waits until etcd
// has created it.
func (b *Barrier) follow(ctx context.Context, prefix string, opts ...clientv3.OpOption) (*follower, error) {
	f := &follower{b: b, ctx: ctx, prefix: prefix, opts: append([]clientv3.OpOption{clientv3.WithPrefix()}, opts...)}
	f.open(clientv3.WithCreatedNotify())
	select {
	case wr, ok := <-f.ch:
		if ok && wr.Err() == nil && !wr.Canceled {
			return f, nil
		}
		f.close()
		if ctx.Err() != nil {
			return nil, context.Cause(ctx)
		}
		if !ok {
			return nil, context.Canceled
		}
		if err := wr.Err(); err != nil {
			return nil, err
		}
		return nil, context.Canceled
	case <-ctx.Done():
		f.close()
		return nil, context.Cause(ctx)
	}
}

func (f *follower) open(opts ...clientv3.OpOption) {
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(f.ctx))
	f.ch = f.b.cli.Watch(wctx, f.prefix, append(append([]clientv3.OpOption(nil), f.opts...), opts...)...)
	f.cancel = cancel
}

// reopen replaces a broken watch with one from revision from on (after a
// compaction or a lost leader; the catch-up delay does not matter then).
func (f *follower) reopen(from int64) {
	f.cancel()
	f.open(clientv3.WithRev(from))
}

func (f *follower) close() { f.cancel() }
