package registry

import (
	"context"
	"strings"
	"time"

	"go.uber.org/zap"
)

// antiEntropyInterval is how often the agent compares its registrations
// with the catalog even when nothing told it to.
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
	t := time.NewTicker(antiEntropyInterval)
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
	for k := range l.pending {
		mine[k] = nil
	}
	l.mu.Unlock()

	written, removed := 0, 0
	for k, r := range mine {
		if r == nil {
			continue
		}
		l.mu.Lock()
		in := r.Instance
		l.mu.Unlock()
		cur, ok := l.catalog.Instance(in.Service, in.ID)
		if ok && sameInstance(cur, &in) {
			continue
		}
		wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := l.write(wctx, in, r.sess.Lease(), false)
		cancel()
		if err != nil {
			l.lg.Debug("anti-entropy write failed", zap.String("instance", k), zap.Error(err))
			continue
		}
		written++
	}
	for _, svc := range l.catalog.Services() {
		for _, in := range l.catalog.Service(svc) {
			if !strings.EqualFold(in.Node, l.node) || in.Revision > horizon {
				continue
			}
			if _, ok := mine[regKey(in.Service, in.ID)]; ok {
				continue
			}
			dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			_, err := l.cli.Delete(dctx, Key(l.namespace, in.Service, in.ID))
			cancel()
			if err == nil {
				removed++
			}
		}
	}
	if written+removed > 0 {
		l.lg.Info("anti-entropy", zap.Int("written-back", written), zap.Int("removed", removed))
	}
}
