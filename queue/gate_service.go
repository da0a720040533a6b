package queue

import (
	"context"

	"github.com/beaconhq/beacon/api/beaconpb"
	"github.com/beaconhq/beacon/internal/rpcerr"
)

// Gate sets or reads a queue's gate.
func (s *Service) Gate(ctx context.Context, req *beaconpb.QueueGateRequest) (*beaconpb.QueueGate, error) {
	var c GateCondition
	switch cond := req.Condition.(type) {
	case nil:
		g, err := s.b.GetGate(ctx, req.Queue)
		if err != nil {
			return nil, rpcerr.From(err)
		}
		return GateProto(req.Queue, g), nil
	case *beaconpb.QueueGateRequest_Count:
		c.Count = int(cond.Count)
		if c.Count == 0 {
			return nil, rpcerr.From(&FieldError{Field: "count", Msg: "must be at least 1"})
		}
	case *beaconpb.QueueGateRequest_After:
		c.After = cond.After
		if c.After == "" {
			return nil, rpcerr.From(&FieldError{Field: "after", Msg: "must name a message id"})
		}
	case *beaconpb.QueueGateRequest_Key:
		c.Key = cond.Key.GetKey()
		if c.Key == "" {
			return nil, rpcerr.From(&FieldError{Field: "key", Msg: "must not be empty"})
		}
		c.Value, c.HasValue = cond.Key.Value, cond.Key.Value != nil
	case *beaconpb.QueueGateRequest_Open:
		c.Open = true
	case *beaconpb.QueueGateRequest_Close:
		c.Close = true
	}
	g, err := s.b.SetGate(ctx, req.Queue, c)
	if err != nil {
		return nil, rpcerr.FromCluster(s.b.cli, err)
	}
	return GateProto(req.Queue, g), nil
}

// GateProto is a gate as the API answers it; nil is "no gate".
func GateProto(queue string, g *Gate) *beaconpb.QueueGate {
	p := &beaconpb.QueueGate{Queue: queue}
	if g == nil {
		return p
	}
	p.Exists, p.Open, p.Revision = true, g.Open, g.Revision
	c := g.Condition
	p.Count, p.After = uint32(c.Count), c.After
	if c.Key != "" {
		p.Key = &beaconpb.QueueGateKey{Key: c.Key}
		if c.HasValue {
			p.Key.Value = append([]byte{}, c.Value...)
		}
	}
	return p
}

// gateStat is the gate in Stats: unset without one.
func gateStat(queue string, g *Gate) *beaconpb.QueueGate {
	if g == nil {
		return nil
	}
	return GateProto(queue, g)
}
