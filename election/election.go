// Package election elects one leader per name among etcd leases, on the
// key layout of etcd's concurrency.Election: a candidate puts
// <namespace>elections/<name>/<lease id hex> under its lease, and the key
// created first leads. `etcdctl elect /beacon/elections/<name>` and
// concurrency.Election therefore campaign in the same elections.
//
// What beacon adds is the binding to the agent's sessions (see Service):
// a leadership ends the moment its application's stream to the agent
// ends, so the next candidate leads within milliseconds, not after a TTL.
// A waiting candidate watches only its predecessor's key, from the
// revision it read it at, so it wakes on the delete itself.
package election

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Election is one named election.
type Election struct {
	cli    *clientv3.Client
	name   string
	prefix string
}

// New returns the election name under namespace (e.g. "/beacon/").
func New(cli *clientv3.Client, namespace, name string) (*Election, error) {
	if err := ValidateName(name); err != nil {
		return nil, err
	}
	return &Election{cli: cli, name: name, prefix: namespace + "elections/" + name + "/"}, nil
}

// Name is the election's name.
func (e *Election) Name() string { return e.name }

// Prefix is the key prefix of the election's candidates, with its
// trailing '/'.
func (e *Election) Prefix() string { return e.prefix }

// Key is the key a candidate with lease campaigns under: the same key
// concurrency.Election writes, so one lease is one candidate whichever
// client campaigns with it.
func (e *Election) Key(lease clientv3.LeaseID) string {
	return fmt.Sprintf("%s%x", e.prefix, int64(lease))
}

// Leader is a leadership as etcd holds it.
type Leader struct {
	Key string
	// Rev is the create revision of Key: the leader's term. Every new
	// leader's Rev is higher than the last one's, so it fences writes.
	Rev      int64
	ModRev   int64
	Lease    clientv3.LeaseID
	Proposal string
}

// Campaign blocks until the candidate with lease leads, and returns its
// leadership. If the lease already campaigns it keeps its place in line
// (and leads at once if it already led), with the proposal updated.
//
// Whenever Campaign returns an error the candidacy is withdrawn, so no key
// is left behind to become a leader nobody knows of. ErrLost means the
// candidate's key went away while it waited (its lease ended).
func (e *Election) Campaign(ctx context.Context, lease clientv3.LeaseID, proposal string) (Leader, error) {
	if err := ValidateProposal(proposal); err != nil {
		return Leader{}, err
	}
	key := e.Key(lease)
	resp, err := e.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
		Then(clientv3.OpPut(key, proposal, clientv3.WithLease(lease))).
		Else(clientv3.OpGet(key)).
		Commit()
	if err != nil {
		return Leader{}, leaseErr(err, lease)
	}
	me := Leader{Key: key, Rev: resp.Header.Revision, ModRev: resp.Header.Revision, Lease: lease, Proposal: proposal}
	if !resp.Succeeded {
		kvs := resp.Responses[0].GetResponseRange().Kvs
		if len(kvs) == 0 {
			return Leader{}, fmt.Errorf("%w: %s vanished while campaigning", ErrLost, key)
		}
		me.Rev, me.ModRev = kvs[0].CreateRevision, kvs[0].ModRevision
		if string(kvs[0].Value) != proposal {
			if me, err = e.Proclaim(ctx, me, proposal); err != nil {
				e.withdraw(me)
				return Leader{}, err
			}
		}
	}
	if err := e.waitTurn(ctx, me); err != nil {
		e.withdraw(me)
		return Leader{}, err
	}
	return me, nil
}

// waitTurn returns once no candidate created before me is left, checking
// in the same transaction that my own key is still there: a lease that
// ended while waiting must never be reported as leading.
func (e *Election) waitTurn(ctx context.Context, me Leader) error {
	before := append(clientv3.WithLastCreate(), clientv3.WithMaxCreateRev(me.Rev-1))
	for {
		resp, err := e.cli.Txn(ctx).
			If(clientv3.Compare(clientv3.CreateRevision(me.Key), "=", me.Rev)).
			Then(clientv3.OpGet(e.prefix, before...)).
			Commit()
		if err != nil {
			return err
		}
		if !resp.Succeeded {
			return fmt.Errorf("%w: %s was deleted while campaigning", ErrLost, me.Key)
		}
		kvs := resp.Responses[0].GetResponseRange().Kvs
		if len(kvs) == 0 {
			return nil
		}
		if err := e.waitDelete(ctx, string(kvs[0].Key), me.Key, resp.Header.Revision+1); err != nil {
			return err
		}
	}
}

// waitDelete waits for the predecessor's key to be deleted, watching from
// the revision after the one it was read at (not from its create
// revision, which would replay its whole history first). It also watches
// the candidate's own key, whose deletion ends the candidacy. A nil return
// means "look again".
func (e *Election) waitDelete(ctx context.Context, pred, own string, from int64) error {
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	predCh := e.cli.Watch(wctx, pred, clientv3.WithRev(from), clientv3.WithFilterPut())
	ownCh := e.cli.Watch(wctx, own, clientv3.WithRev(from), clientv3.WithFilterPut())
	for {
		select {
		case wr, ok := <-predCh:
			if !ok || wr.Canceled || wr.Err() != nil || len(wr.Events) > 0 {
				return ctx.Err()
			}
		case wr, ok := <-ownCh:
			if !ok || wr.Canceled || wr.Err() != nil {
				return ctx.Err()
			}
			if len(wr.Events) > 0 {
				return fmt.Errorf("%w: %s was deleted while campaigning", ErrLost, own)
			}
		}
	}
}

// withdraw deletes a candidacy that Campaign gives up, if it is still
// the same one. It runs even when the caller's context has ended; if etcd
// is unreachable the key goes with its lease.
func (e *Election) withdraw(me Leader) {
	if me.Rev == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, _ = e.Resign(ctx, me)
}

// Proclaim changes the leader's proposal; ErrNotLeader if l's leadership
// has ended.
func (e *Election) Proclaim(ctx context.Context, l Leader, proposal string) (Leader, error) {
	if err := ValidateProposal(proposal); err != nil {
		return l, err
	}
	resp, err := e.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(l.Key), "=", l.Rev)).
		Then(clientv3.OpPut(l.Key, proposal, clientv3.WithLease(l.Lease))).
		Commit()
	if err != nil {
		return l, leaseErr(err, l.Lease)
	}
	if !resp.Succeeded {
		return l, fmt.Errorf("%w: the leadership at rev %d has ended", ErrNotLeader, l.Rev)
	}
	l.Proposal, l.ModRev = proposal, resp.Header.Revision
	return l, nil
}

// Resign ends l's leadership (or candidacy), so the next candidate leads
// at once. It reports false if that leadership had already ended.
func (e *Election) Resign(ctx context.Context, l Leader) (bool, error) {
	resp, err := e.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(l.Key), "=", l.Rev)).
		Then(clientv3.OpDelete(l.Key)).
		Commit()
	if err != nil {
		return false, err
	}
	return resp.Succeeded, nil
}

// leaseErr turns etcd's "lease not found" into ErrLost: the lease the
// candidate campaigns with has ended.
func leaseErr(err error, lease clientv3.LeaseID) error {
	if errors.Is(err, rpctypes.ErrLeaseNotFound) {
		return fmt.Errorf("%w: lease %x has ended", ErrLost, int64(lease))
	}
	return err
}
