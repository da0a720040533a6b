package agent

import (
	"github.com/beaconhq/beacon/api/beaconpb"
	"github.com/beaconhq/beacon/lock"
)

// startLock serves the Lock service: distributed locks and semaphores in
// application sessions, with fencing tokens (lock/README.md). Stopping
// ends the waiters' shared watches.
func startLock(d RecipeDeps) func() {
	s := lock.NewService(d.Client, d.Sessions, d.Namespace,
		lock.WithNode(d.Node), lock.WithLogger(d.Logger.Named("lock")))
	beaconpb.RegisterLockServer(d.GRPC, s)
	d.Metrics.MustRegister(s.Metrics())
	return s.Close
}
