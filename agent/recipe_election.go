package agent

import (
	"github.com/beaconhq/beacon/api/beaconpb"
	"github.com/beaconhq/beacon/election"
)

func init() {
	recipes = append(recipes, func(d RecipeDeps) {
		svc := election.NewService(d.Client, d.Sessions,
			election.WithNamespace(d.Namespace), election.WithLogger(d.Logger.Named("election")))
		beaconpb.RegisterElectionServer(d.GRPC, svc)
		d.Metrics.MustRegister(svc.Metrics())
	})
}
