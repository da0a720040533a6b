package agent

import (
	"github.com/beaconhq/beacon/api/beaconpb"
	"github.com/beaconhq/beacon/queue"
)

// The Queue service: durable FIFO queues under <namespace>queues/.
func init() {
	recipes = append(recipes, func(d RecipeDeps) {
		b := queue.New(d.Client, d.Namespace, queue.WithNode(d.Node), queue.WithLogger(d.Logger.Named("queue")))
		beaconpb.RegisterQueueServer(d.GRPC, queue.NewService(b, d.Sessions))
		d.Metrics.MustRegister(b.Metrics())
	})
}
