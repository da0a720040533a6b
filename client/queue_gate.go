package client

import (
	"context"

	"github.com/beaconhq/beacon/api/beaconpb"
)

// GateCondition is what opens a queue's gate: GateCount, GateAfter,
// GateKey, GateKeyValue, GateOpen or GateClose.
type GateCondition func(*beaconpb.QueueGateRequest)

// GateCount opens the gate once n messages are ready (messages pushed
// with last not counted).
func GateCount(n uint32) GateCondition {
	return func(r *beaconpb.QueueGateRequest) { r.Condition = &beaconpb.QueueGateRequest_Count{Count: n} }
}

// GateAfter opens the gate once message id is acked; until then only it
// is handed out.
func GateAfter(id string) GateCondition {
	return func(r *beaconpb.QueueGateRequest) { r.Condition = &beaconpb.QueueGateRequest_After{After: id} }
}

// GateKey opens the gate once the config key exists.
func GateKey(key string) GateCondition {
	return func(r *beaconpb.QueueGateRequest) {
		r.Condition = &beaconpb.QueueGateRequest_Key{Key: &beaconpb.QueueGateKey{Key: key}}
	}
}

// GateKeyValue opens the gate once the config key holds value.
func GateKeyValue(key string, value []byte) GateCondition {
	return func(r *beaconpb.QueueGateRequest) {
		r.Condition = &beaconpb.QueueGateRequest_Key{Key: &beaconpb.QueueGateKey{Key: key, Value: append([]byte{}, value...)}}
	}
}

// GateOpen opens the gate now, keeping its condition.
func GateOpen() GateCondition {
	return func(r *beaconpb.QueueGateRequest) { r.Condition = &beaconpb.QueueGateRequest_Open{Open: true} }
}

// GateClose closes the gate now; only GateOpen opens it again.
func GateClose() GateCondition {
	return func(r *beaconpb.QueueGateRequest) { r.Condition = &beaconpb.QueueGateRequest_Close{Close: true} }
}

// SetQueueGate gives queue a gate (replacing any it had) and returns it.
// Push the queue's "big task" with QueueEnqueueRequest.Last set.
func (c *Client) SetQueueGate(ctx context.Context, queue string, cond GateCondition) (*beaconpb.QueueGate, error) {
	req := &beaconpb.QueueGateRequest{Queue: queue}
	cond(req)
	return beaconpb.NewQueueClient(c.conn).Gate(ctx, req)
}

// QueueGate reads queue's gate; Exists is false when it has none.
func (c *Client) QueueGate(ctx context.Context, queue string) (*beaconpb.QueueGate, error) {
	return beaconpb.NewQueueClient(c.conn).Gate(ctx, &beaconpb.QueueGateRequest{Queue: queue})
}
