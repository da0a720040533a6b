package agent

import (
	"github.com/beaconhq/beacon/api/beaconpb"
	"github.com/beaconhq/beacon/barrier"
)

// startBarrier serves the Barrier service: double barriers in application
// sessions (barrier/README.md). Every participant lives in its Enter
// call, so nothing to stop.
func startBarrier(d RecipeDeps) func() {
	s := barrier.NewService(barrier.Config{
		Client: d.Client, Sessions: d.Sessions, Namespace: d.Namespace, Node: d.Node,
		MaxParticipants: d.Config.MaxBarrierParticipants, Logger: d.Logger.Named("barrier"),
	})
	beaconpb.RegisterBarrierServer(d.GRPC, s)
	return nil
}
