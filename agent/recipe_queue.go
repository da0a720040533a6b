package agent

import (
	"github.com/beaconhq/beacon/api/beaconpb"
	"github.com/beaconhq/beacon/queue"
)

// startQueue serves the Queue service: durable FIFO queues under
// <namespace>queues/. Stopping ends the broker's queue views.
func startQueue(d RecipeDeps) func() {
	b := queue.New(d.Client, d.Namespace, queue.WithNode(d.Node), queue.WithLogger(d.Logger.Named("queue")),
		queue.WithMaxViews(d.Config.MaxQueueViews))
	beaconpb.RegisterQueueServer(d.GRPC, queue.NewService(b, d.Sessions))
	d.Metrics.MustRegister(b.Metrics())
	return func() { _ = b.Close() }
}
