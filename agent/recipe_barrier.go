package agent

import (
	"github.com/beaconhq/beacon/api/beaconpb"
	"github.com/beaconhq/beacon/barrier"
)

// startBarrier serves the Barrier service: double barriers in application
// sessions (barrier/README.md). Every participant lives in its Enter
// call, so nothing to stop.
func startBarrier(d RecipeDeps) func() {
	s := barrier.NewService(d.Client, d.Sessions, d.Namespace, barrier.WithNode(d.Node),
		barrier.WithLimit(d.Config.MaxBarrierParticipants), barrier.WithLogger(d.Logger.Named("barrier")))
	beaconpb.RegisterBarrierServer(d.GRPC, s)
	return nil
}
