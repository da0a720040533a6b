package queue

import (
	"context"
	"math"
	"time"

	"github.com/beaconhq/beacon/api/beaconpb"
	"github.com/beaconhq/beacon/internal/rpcerr"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Progress records a worker's report on the message it holds.
func (s *Service) Progress(ctx context.Context, req *beaconpb.QueueProgressRequest) (*beaconpb.QueueProgressResponse, error) {
	// The report first: a bad one is named whatever the receipt.
	percent := int(min(req.Percent, math.MaxInt32))
	if err := ValidateProgress(percent, req.Message); err != nil {
		return nil, rpcerr.From(err)
	}
	r, err := ParseReceipt(req.Receipt)
	if err != nil {
		return nil, rpcerr.From(err)
	}
	as, err := s.caller(req.SessionId)
	if err != nil {
		return nil, err
	}
	if err := s.b.Progress(ctx, r, percent, req.Message, as...); err != nil {
		return nil, rpcerr.From(err)
	}
	return &beaconpb.QueueProgressResponse{}, nil
}

// inFlightProto is Stats' listing as the API answers it; ages are from now.
func inFlightProto(list []InFlight, now time.Time) []*beaconpb.QueueInFlight {
	out := make([]*beaconpb.QueueInFlight, 0, len(list))
	for _, f := range list {
		p := &beaconpb.QueueInFlight{Id: f.ID, Node: f.Node, Pid: f.Pid, Deliveries: uint32(f.Deliveries),
			Deadline: timestamppb.New(f.Deadline), Age: durationpb.New(0)}
		if !f.Reserved.IsZero() {
			p.ReservedAt = timestamppb.New(f.Reserved)
			p.Age = durationpb.New(max(0, now.Sub(f.Reserved)))
		}
		if f.Progress != nil {
			pct := uint32(f.Progress.Percent)
			p.Percent, p.ProgressMessage, p.ProgressAt = &pct, f.Progress.Message, timestamppb.New(f.Progress.At)
		}
		out = append(out, p)
	}
	return out
}
