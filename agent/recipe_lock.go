package agent

import (
	"github.com/beaconhq/beacon/api/beaconpb"
	"github.com/beaconhq/beacon/lock"
)

// startLock serves the Lock service: distributed locks and semaphores in
// application sessions, with fencing tokens (lock/README.md). Stopping
// ends the waiters' shared watches.
func startLock(d RecipeDeps) func() {
	s := lock.NewService(lock.Config{
		Client: d.Client, Sessions: d.Sessions, Namespace: d.Namespace, Node: d.Node,
		Logger: d.Logger.Named("lock"),
	})
	beaconpb.RegisterLockServer(d.GRPC, s)
	d.Metrics.MustRegister(s.Metrics())
	return s.Close
}
