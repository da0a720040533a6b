package agent

import (
	"github.com/beaconhq/beacon/api/beaconpb"
	"github.com/beaconhq/beacon/election"
)

// startElection serves the Election service. It runs nothing of its own
// between calls (every candidacy lives in its call), so nothing to stop.
func startElection(d RecipeDeps) func() {
	s := election.NewService(d.Client, d.Sessions, d.Namespace,
		election.WithLogger(d.Logger.Named("election")))
	beaconpb.RegisterElectionServer(d.GRPC, s)
	d.Metrics.MustRegister(s.Metrics())
	return nil
}
