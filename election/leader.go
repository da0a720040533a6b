package election

import (
	"context"
	"fmt"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Leader reads the current leader and the revision it was read at;
// ErrNoLeader when nobody campaigns.
func (e *Election) Leader(ctx context.Context) (Leader, int64, error) {
	resp, err := e.cli.Get(ctx, e.prefix, clientv3.WithFirstCreate()...)
	if err != nil {
		return Leader{}, 0, err
	}
	if len(resp.Kvs) == 0 {
		return Leader{}, resp.Header.Revision, fmt.Errorf("%w: nobody campaigns in %q", ErrNoLeader, e.name)
	}
	return fromKV(resp.Kvs[0]), resp.Header.Revision, nil
}

// Check confirms that l still leads and returns it as etcd has it now:
// ErrLost if its key is gone (or is another term's), ErrNotLeader if it
// is only a candidate.
func (e *Election) Check(ctx context.Context, l Leader) (Leader, error) {
	resp, err := e.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(l.Key), "=", l.Rev)).
		Then(clientv3.OpGet(e.prefix, clientv3.WithFirstCreate()...)).
		Commit()
	if err != nil {
		return l, err
	}
	if !resp.Succeeded {
		return l, fmt.Errorf("%w: the leadership at rev %d has ended", ErrLost, l.Rev)
	}
	first := resp.Responses[0].GetResponseRange().Kvs[0] // l's key at least is there
	if string(first.Key) != l.Key {
		return l, fmt.Errorf("%w: rev %d is a candidate behind rev %d", ErrNotLeader, l.Rev, first.CreateRevision)
	}
	return fromKV(first), nil
}

// WaitLost blocks while l leads and returns ErrLost when its key is
// deleted or replaced. With confirm > 0 it also re-reads the key (a quorum
// read) every confirm, and returns ErrLost once no read has confirmed it
// for twice that long: a leader cut off from the cluster cannot see its
// lease expire there, so it must give up before that can happen. Other
// errors come from the context.
func (e *Election) WaitLost(ctx context.Context, l Leader, confirm time.Duration) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	lost := make(chan error, 2)
	if confirm > 0 {
		go func() { lost <- e.confirmLoop(ctx, l, confirm) }()
	}
	go func() { lost <- e.watchLost(ctx, l) }()
	return <-lost
}

// watchLost returns ErrLost when l's key is deleted or re-created, or the
// context's error.
func (e *Election) watchLost(ctx context.Context, l Leader) error {
	for {
		resp, err := e.cli.Get(ctx, l.Key)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			// etcd is unreachable; the confirm loop (if any) decides
			// when that means lost. Retry without spinning.
			if !sleepCtx(ctx, 100*time.Millisecond) {
				return ctx.Err()
			}
			continue
		}
		if len(resp.Kvs) == 0 || resp.Kvs[0].CreateRevision != l.Rev {
			return fmt.Errorf("%w: %s at rev %d was deleted", ErrLost, l.Key, l.Rev)
		}
		wctx, wcancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
		wch := e.cli.Watch(wctx, l.Key, clientv3.WithRev(resp.Header.Revision+1))
		for wr := range wch {
			if wr.Err() != nil {
				break
			}
			for _, ev := range wr.Events {
				if ev.Type == mvccpb.DELETE || ev.Kv.CreateRevision != l.Rev {
					wcancel()
					return fmt.Errorf("%w: %s at rev %d was deleted", ErrLost, l.Key, l.Rev)
				}
			}
		}
		wcancel()
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
}

func (e *Election) confirmLoop(ctx context.Context, l Leader, every time.Duration) error {
	t := time.NewTicker(every)
	defer t.Stop()
	last := time.Now() // start of the last read that confirmed l
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
		deadline := last.Add(2 * every)
		for {
			start := time.Now()
			rctx, cancel := context.WithDeadline(ctx, deadline)
			resp, err := e.cli.Get(rctx, l.Key)
			cancel()
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if err == nil {
				if len(resp.Kvs) == 0 || resp.Kvs[0].CreateRevision != l.Rev {
					return fmt.Errorf("%w: %s at rev %d was deleted", ErrLost, l.Key, l.Rev)
				}
				last = start
				break
			}
			if !time.Now().Before(deadline) {
				return fmt.Errorf("%w: cannot confirm the leadership at rev %d for %s: %v", ErrLost, l.Rev, 2*every, err)
			}
			sleepCtx(ctx, min(50*time.Millisecond, time.Until(deadline)))
		}
	}
}

func fromKV(kv *mvccpb.KeyValue) Leader {
	return Leader{Key: string(kv.Key), Rev: kv.CreateRevision, ModRev: kv.ModRevision,
		Lease: clientv3.LeaseID(kv.Lease), Proposal: string(kv.Value)}
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
