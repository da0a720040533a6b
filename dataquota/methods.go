package dataquota

import (
	"context"

	"github.com/beaconhq/beacon/api/beaconpb"
	"github.com/beaconhq/beacon/internal/rpcerr"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
)

// dataBytes is how many bytes of client data a call asks etcd to keep:
// the values it writes, for the methods that write what a client chose.
// Everything else is 0 and always admitted: sessions, lock and election
// keys without a value, acks, nacks, deletes, reads. Registrations count:
// an instance is up to 64 KiB of a client's meta, and an agent's own
// registrations (its config's services: block) do not come through the
// API.
func dataBytes(method string, req any) int {
	switch method {
	case beaconpb.Config_Put_FullMethodName:
		r := req.(*beaconpb.ConfigPutRequest)
		return len(r.Key) + len(r.Value)
	case beaconpb.Queue_Enqueue_FullMethodName:
		r := req.(*beaconpb.QueueEnqueueRequest)
		return len(r.Queue) + len(r.Payload) + len(r.DedupId)
	case beaconpb.Queue_Progress_FullMethodName:
		return len(req.(*beaconpb.QueueProgressRequest).Message)
	case beaconpb.Lock_Fenced_FullMethodName:
		n := 0
		for _, op := range req.(*beaconpb.LockFencedRequest).Ops {
			if op.Type == beaconpb.LockOpType_LOCK_OP_PUT {
				n += len(op.Key) + len(op.Value)
			}
		}
		return n
	case beaconpb.Election_Campaign_FullMethodName:
		return len(req.(*beaconpb.ElectionCampaignRequest).Proposal)
	case beaconpb.Election_Proclaim_FullMethodName:
		return len(req.(*beaconpb.ElectionProclaimRequest).Proposal)
	case beaconpb.Registry_Register_FullMethodName:
		return proto.Size(req.(*beaconpb.RegisterRequest).Instance)
	}
	return 0
}

// Unary is the guard as a unary interceptor: a call that writes data is
// admitted by its bytes before its handler runs. Every method that
// writes data is unary.
func (g *Guard) Unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	if err := g.Admit(dataBytes(info.FullMethod, req)); err != nil {
		return nil, rpcerr.From(err)
	}
	return h(ctx, req)
}
