package client

import (
	"context"

	"github.com/beaconhq/beacon/api/beaconpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Progress reports how far the reservation's holder has got with its
// message: percent from 0 to 100 and a short message (at most 1024
// bytes), shown by QueueStats with inFlight. It replaces the last report;
// the agent keeps it under the reservation's lease, so it goes with the
// session, and an ack or nack removes it. A reservation that ended
// answers FailedPrecondition. Each call is one write: a caller reporting
// often should send the latest only, a few times a second at most.
func (r *Reservation) Progress(ctx context.Context, percent int, message string) error {
	if percent < 0 || percent > 100 {
		return status.Errorf(codes.InvalidArgument, "percent: %d is not from 0 to 100", percent)
	}
	_, err := r.q.Progress(ctx, &beaconpb.QueueProgressRequest{Receipt: r.Receipt, SessionId: r.sessionID,
		Percent: uint32(percent), Message: message})
	return err
}

// QueueStats counts a queue's messages; with inFlight it also lists the
// in-flight ones: worker (node, pid), age, deliveries and progress.
func (c *Client) QueueStats(ctx context.Context, queue string, inFlight bool) (*beaconpb.QueueStats, error) {
	return beaconpb.NewQueueClient(c.conn).Stats(ctx, &beaconpb.QueueStatsRequest{Queue: queue, InFlight: inFlight})
}
