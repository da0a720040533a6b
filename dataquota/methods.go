package dataquota

import (
	"context"

	"github.com/beaconhq/beacon/api/beaconpb"
	"google.golang.org/grpc"
)

// dataMethods write what a client chose to keep: their writes are data,
// judged at the data line. Every other method's writes (sessions, lock,
// election and barrier keys, acks and nacks, registrations and their
// status) are judged at the client line; deletes at neither.
var dataMethods = map[string]bool{
	beaconpb.Config_Put_FullMethodName:     true,
	beaconpb.Queue_Enqueue_FullMethodName:  true,
	beaconpb.Queue_Progress_FullMethodName: true,
	beaconpb.Queue_Gate_FullMethodName:     true, // a key gate keeps the key's value
	beaconpb.Queue_Redrive_FullMethodName:  true, // rewrites dead letters as messages
	beaconpb.Lock_Fenced_FullMethodName:    true,
}

// largeProposal: a campaign or proclamation whose value is longer is
// data (a proposal may be 1 MiB); a leader's usual value (an address, an
// id) is coordination, so elections go on when data is full.
const largeProposal = 1 << 10

// classOfCall is the class of a call's writes; req is nil for a stream.
func classOfCall(method string, req any) class {
	if dataMethods[method] {
		return classData
	}
	switch r := req.(type) {
	case *beaconpb.ElectionCampaignRequest:
		if len(r.Proposal) > largeProposal {
			return classData
		}
	case *beaconpb.ElectionProclaimRequest:
		if len(r.Proposal) > largeProposal {
			return classData
		}
	}
	return classClient
}

// Unary marks a unary call's context with its class, so that what the
// call writes through the guarded client is judged at its line.
func (g *Guard) Unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	return h(withClass(ctx, classOfCall(info.FullMethod, req)), req)
}

// Stream is Unary for streams (Session.Open, Barrier.Enter, …).
func (g *Guard) Stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	return h(srv, classedStream{ServerStream: ss, ctx: withClass(ss.Context(), classOfCall(info.FullMethod, nil))})
}

type classedStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s classedStream) Context() context.Context { return s.ctx }
