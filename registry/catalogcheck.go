package registry

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// defaultCheckEvery is how often a following catalog compares itself with
// etcd.
const defaultCheckEvery = 30 * time.Second

// errDiverged: the catalog and etcd disagree; follow ends and Run relists.
var errDiverged = errors.New("the catalog diverged from etcd")

// checkCount compares the number of keys under services/ in etcd, at the
// revision up to which the catalog has applied every change (its last
// event's, or the last progress notice's, which follow asks for after
// each check), with the catalog's own count. A watch should never lose an event, but a catalog
// that did would answer without an instance, or with a dead one, for as
// long as the agent runs; a count check costs etcd no values and bounds
// such a divergence to one interval. It misses a change that a lost event
// made to an instance's value; a lost put or delete it catches.
func (c *Catalog) checkCount(ctx context.Context) error {
	c.mu.RLock()
	rev, have := c.svcRev, len(c.badKeys)
	for _, e := range c.services {
		have += len(e.byID)
	}
	c.mu.RUnlock()
	if rev == 0 {
		return nil
	}
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	resp, err := c.cli.Get(cctx, servicesPrefix(c.namespace), clientv3.WithPrefix(), clientv3.WithCountOnly(), clientv3.WithRev(rev))
	switch {
	case errors.Is(err, rpctypes.ErrCompacted):
		return fmt.Errorf("%w: revision %d is compacted", errDiverged, rev) // relisting is cheap next to doubt
	case err != nil:
		return nil // the cluster is unreachable: the watch says so itself
	case int(resp.Count) != have:
		c.lg.Warn("the catalog missed changes: relisting", zap.Int64("revision", rev),
			zap.Int64("in etcd", resp.Count), zap.Int("in the catalog", have))
		return fmt.Errorf("%w at revision %d: %d instances in etcd, %d here", errDiverged, rev, resp.Count, have)
	}
	return nil
}
