package cluster

import (
	"context"
	"fmt"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
)

// MembershipLockKey serialises membership changes cluster-wide: joins
// (etcd promotes one learner at a time, and auto's voter count must not go
// stale while another host joins) and leaves (two voters leaving at once
// could each see quorum kept and together break it).
func MembershipLockKey(namespace string) string { return namespace + "cluster/join" }

// WithMembershipLock runs fn while holding the membership lock. The lock's
// lease ends with a crashed holder after 10s.
func WithMembershipLock(ctx context.Context, cli *clientv3.Client, namespace string, fn func() error) error {
	s, err := concurrency.NewSession(cli, concurrency.WithTTL(10), concurrency.WithContext(ctx))
	if err != nil {
		return err
	}
	defer s.Close()
	mu := concurrency.NewMutex(s, MembershipLockKey(namespace))
	if err := mu.Lock(ctx); err != nil {
		return fmt.Errorf("waiting for another host's membership change to finish: %w", err)
	}
	defer func() {
		uctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = mu.Unlock(uctx) // the session's lease ends the lock anyway
	}()
	return fn()
}
