package agent

import (
	"github.com/beaconhq/beacon/api/beaconpb"
	"github.com/beaconhq/beacon/lock"
)

// The Lock service: distributed locks and semaphores in application
// sessions, with fencing tokens (lock/README.md).
func init() {
	recipes = append(recipes, func(d RecipeDeps) {
		svc := lock.NewService(lock.Config{
			Client: d.Client, Sessions: d.Sessions, Namespace: d.Namespace, Node: d.Node,
			Logger: d.Logger.Named("lock"),
		})
		beaconpb.RegisterLockServer(d.GRPC, svc)
		d.Metrics.MustRegister(svc.Metrics())
	})
}
