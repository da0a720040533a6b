package queue

import (
	"context"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// dedupLeases shares leases among dedup records: a record for window W
// takes a lease that expires between W and W + slack + 1s from now (slack
// is W/10, at least 1s; the second is etcd's TTL granularity), so a steady
// stream of dedup ids costs one grant per slack period rather than one per
// message.
type dedupLeases struct {
	cli *clientv3.Client

	mu     sync.Mutex
	leases []dedupLease
}

type dedupLease struct {
	id      clientv3.LeaseID
	expires time.Time // measured from before the grant: never later than etcd's
}

func newDedupLeases(cli *clientv3.Client) *dedupLeases { return &dedupLeases{cli: cli} }

func (d *dedupLeases) get(ctx context.Context, now time.Time, window time.Duration) (clientv3.LeaseID, error) {
	slack := max(window/10, time.Second)
	lo, hi := now.Add(window), now.Add(window+slack+time.Second)
	d.mu.Lock()
	kept := d.leases[:0]
	var found clientv3.LeaseID
	for _, l := range d.leases {
		if l.expires.Before(now.Add(time.Second)) {
			continue // about to expire: never hand it out
		}
		kept = append(kept, l)
		if found == 0 && !l.expires.Before(lo) && !l.expires.After(hi) {
			found = l.id
		}
	}
	d.leases = kept
	d.mu.Unlock()
	if found != 0 {
		return found, nil
	}
	ttl := int64((window + slack + time.Second - 1) / time.Second)
	resp, err := d.cli.Grant(ctx, ttl)
	if err != nil {
		return 0, err
	}
	d.mu.Lock()
	d.leases = append(d.leases, dedupLease{id: resp.ID, expires: now.Add(time.Duration(ttl) * time.Second)})
	d.mu.Unlock()
	return resp.ID, nil
}

// forget drops the cache after etcd said a lease was gone (revoked by an
// operator, or a clock jump).
func (d *dedupLeases) forget() {
	d.mu.Lock()
	d.leases = nil
	d.mu.Unlock()
}
