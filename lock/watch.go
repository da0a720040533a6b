package lock

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Watch follows the grant (key, token) until it stops holding, and returns
// ErrLost saying why (or ctx's error). held is called once, when the grant
// is first confirmed; if it does not hold at the start, Watch returns
// ErrLost without calling it.
//
// When the cluster cannot be reached (no leader, connection down), Watch
// keeps trying; once the grant has gone unconfirmed for longer than its
// lease's TTL, the lease has surely expired, and Watch reports it lost
// rather than let a holder believe in it indefinitely.
func Watch(ctx context.Context, cli *clientv3.Client, key string, token int64, held func()) error {
	if _, err := LeaseOf(key); err != nil {
		return err
	}
	var (
		ttl       time.Duration
		confirmed time.Time
		backoff   = 20 * time.Millisecond
	)
	for {
		err := watchOnce(ctx, cli, key, token, func(leaseTTL time.Duration) {
			if confirmed.IsZero() {
				ttl = leaseTTL
				held()
			}
			confirmed = time.Now()
		})
		if ctx.Err() != nil {
			return cause(ctx)
		}
		if errors.Is(err, ErrLost) {
			return err
		}
		if confirmed.IsZero() {
			// Never confirmed: say so rather than retry blindly.
			return err
		}
		if time.Since(confirmed) > ttl {
			return fmt.Errorf("%w: the cluster could not confirm %s for longer than its lease's TTL (%s): %v", ErrLost, key, ttl, err)
		}
		select {
		case <-ctx.Done():
			return cause(ctx)
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, time.Second)
	}
}

// watchOnce confirms the grant after its watch exists, then waits for the
// key's delete. Errors other than ErrLost are transient.
//
// A watch needing a leader is cancelled by a member that loses quorum, but
// a member that cannot be reached at all (stopped, or a proxy cut off)
// sends nothing, and etcd's client waits for it without end: a probe
// (probeMember) ends the attempt when the member stops answering, so that
// Watch can count the time unconfirmed.
func watchOnce(ctx context.Context, cli *clientv3.Client, key string, token int64, confirmed func(ttl time.Duration)) error {
	wctx, cancel := context.WithCancelCause(clientv3.WithRequireLeader(ctx))
	defer cancel(nil)
	go probeMember(wctx, cli, key, cancel)
	// unanswered is the probe's verdict, if it gave one.
	unanswered := func() error {
		if err := context.Cause(wctx); err != nil && ctx.Err() == nil && !errors.Is(err, context.Canceled) {
			return err
		}
		return nil
	}
	wch := cli.Watch(wctx, key, clientv3.WithCreatedNotify())
	if _, err := watchCreated(wctx, wch); err != nil {
		if u := unanswered(); u != nil {
			return u
		}
		return err
	}
	resp, err := cli.Get(wctx, key) // with the lease, which keys-only answers leave out
	if err != nil {
		return err
	}
	if len(resp.Kvs) == 0 || resp.Kvs[0].CreateRevision != token {
		return fmt.Errorf("%w: %s with token %d does not hold", ErrLost, key, token)
	}
	ttl := 10 * time.Second
	if t, err := cli.TimeToLive(wctx, clientv3.LeaseID(resp.Kvs[0].Lease)); err == nil && t.GrantedTTL > 0 {
		ttl = time.Duration(t.GrantedTTL) * time.Second
	}
	confirmed(ttl)
	for wr := range wch {
		if wr.Err() != nil || wr.Canceled {
			break
		}
		for _, ev := range wr.Events {
			if ev.Type == mvccpb.DELETE || ev.Kv.CreateRevision != token {
				return fmt.Errorf("%w: %s was deleted (released, or its lease ended)", ErrLost, key)
			}
		}
	}
	if u := unanswered(); u != nil {
		return u
	}
	// Held until this moment: the watch stood (with a leader).
	confirmed(ttl)
	return errRewatch
}

// probeEvery is how often a grant's watch checks that its member still
// answers, and how long the check may take.
const probeEvery = time.Second

// errNoAnswer: the member a grant's watch runs on did not answer a probe.
var errNoAnswer = errors.New("the member does not answer")

// probeMember reads key (serializable: the member's own answer, no raft
// round) every probeEvery until ctx ends, and cancels ctx with
// errNoAnswer when a read fails.
func probeMember(ctx context.Context, cli *clientv3.Client, key string, cancel context.CancelCauseFunc) {
	t := time.NewTicker(probeEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		pctx, pcancel := context.WithTimeout(ctx, probeEvery)
		_, err := cli.Get(pctx, key, clientv3.WithSerializable(), clientv3.WithCountOnly())
		pcancel()
		if err != nil && ctx.Err() == nil {
			cancel(fmt.Errorf("%w: %v", errNoAnswer, err))
			return
		}
	}
}
