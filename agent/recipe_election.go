package agent

import (
	"github.com/beaconhq/beacon/api/beaconpb"
	"github.com/beaconhq/beacon/election"
)

func init() {
	recipes = append(recipes, func(d RecipeDeps) {
		beaconpb.RegisterElectionServer(d.GRPC, election.NewService(d.Client, d.Sessions,
			election.WithNamespace(d.Namespace), election.WithLogger(d.Logger.Named("election"))))
	})
}
