package registry

import (
	"context"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// antiEntropyInterval is how often the agent compares its registrations
// with the catalog even when nothing told it to, by default (the agent's
// anti-entropy-interval).
const antiEntropyInterval = 5 * time.Second

// Kick asks for an anti-entropy pass now (a lease was lost, a write failed).
func (l *Local) Kick() {
	select {
	case l.kick <- struct{}{}:
	default:
	}
}

// RunAntiEntropy keeps etcd in line with this agent's registrations until
// ctx ends: what the node has and etcd lacks (or holds differently) is
// written back under the owner's current lease; what etcd lists for this
// node and the node no longer has is removed.
func (l *Local) RunAntiEntropy(ctx context.Context) {
	select {
	case <-ctx.Done():
		return
	case <-l.catalog.Ready():
	}
	t := time.NewTicker(l.antiEntropyEvery)
	defer t.Stop()
	for {
		l.sync(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-l.kick:
		}
	}
}

func (l *Local) sync(ctx context.Context) {
	// Instances written after this revision may be registrations still in
	// flight; only older ones can be stale.
	horizon := l.catalog.Revision()
	l.mu.Lock()
	mine := make(map[string]*registration, len(l.regs))
	for k, r := range l.regs {
		mine[k] = r
	}
	l.mu.Unlock()

	written, removed := 0, 0
	for k, r := range mine {
		ok, err := l.repair(ctx, k, r)
		if err != nil {
			l.lg.Debug("anti-entropy write failed", zap.String("instance", k), zap.Error(err))
		}
		if ok {
			written++
		}
	}
	for _, in := range l.catalog.NodeInstances(l.node) {
		// The index is by lower-cased name; node names are not: "Web1"
		// and "web1" are two agents, and neither's instances are stale
		// to the other.
		if in.Node != l.node {
			continue
		}
		if in.Revision <= horizon && l.removeStale(ctx, in) {
			removed++
		}
	}
	if written+removed > 0 {
		l.repairs.Add(uint64(written + removed))
		l.lg.Info("anti-entropy", zap.Int("written-back", written), zap.Int("removed", removed))
	}
}

// repair writes r back if etcd lacks it or holds it differently, under the
// key's lock and only while r is still registered.
func (l *Local) repair(ctx context.Context, k string, r *registration) (bool, error) {
	mu := l.keyLock(k)
	mu.Lock()
	defer mu.Unlock()
	l.mu.Lock()
	if !l.currentLocked(k, r) {
		l.mu.Unlock()
		return false, nil
	}
	in := r.Instance
	lease := r.sess.Lease()
	l.mu.Unlock()
	// The same instance under another lease is stale too: restored after
	// a crash, its key is still under the dead run's lease and would go
	// when that expires.
	if cur, ok := l.catalog.Instance(in.Service, in.ID); ok && sameInstance(cur, &in) && cur.Lease == int64(lease) {
		return false, nil
	}
	wctx, cancel := context.WithTimeout(r.writeContext(ctx), 5*time.Second)
	defer cancel()
	_, err := l.write(wctx, in, lease)
	return err == nil, err
}

// removeStale deletes an instance etcd lists for this node that the node
// does not have, unless a registration took the key meanwhile.
func (l *Local) removeStale(ctx context.Context, in *Instance) bool {
	k := regKey(in.Service, in.ID)
	mu := l.keyLock(k)
	mu.Lock()
	defer mu.Unlock()
	l.mu.Lock()
	_, mine := l.regs[k]
	l.mu.Unlock()
	if mine {
		return false
	}
	dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	key := Key(l.namespace, in.Service, in.ID)
	resp, err := l.cli.Txn(dctx).If(clientv3.Compare(clientv3.ModRevision(key), "=", in.Revision)).
		Then(clientv3.OpDelete(key)).Commit()
	return err == nil && resp.Succeeded
}
