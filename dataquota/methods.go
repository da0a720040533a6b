package dataquota

import (
	"context"

	"github.com/beaconhq/beacon/api/beaconpb"
	"google.golang.org/grpc"
)

// dataMethods write what a client chose to keep: their writes are data,
// judged at the data line. Every other method's writes (sessions, lock,
// election and barrier keys, acks, registrations and their status) are
// judged at the client line; deletes at neither.
var dataMethods = map[string]bool{
	beaconpb.Config_Put_FullMethodName:        true,
	beaconpb.Queue_Enqueue_FullMethodName:     true,
	beaconpb.Queue_Progress_FullMethodName:    true,
	beaconpb.Queue_Gate_FullMethodName:        true, // a key gate keeps the key's value
	beaconpb.Queue_Nack_FullMethodName:        true, // rewrites the message
	beaconpb.Queue_Redrive_FullMethodName:     true, // rewrites the messages
	beaconpb.Lock_Fenced_FullMethodName:       true,
	beaconpb.Election_Campaign_FullMethodName: true, // a proposal is the candidate's value
	beaconpb.Election_Proclaim_FullMethodName: true,
}

func classOfMethod(method string) class {
	if dataMethods[method] {
		return classData
	}
	return classClient
}

// Unary marks a unary call's context with its class, so that what the
// call writes through the guarded client is judged at its line.
func (g *Guard) Unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	return h(withClass(ctx, classOfMethod(info.FullMethod)), req)
}

// Stream is Unary for streams (Session.Open, Barrier.Enter, …).
func (g *Guard) Stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	return h(srv, classedStream{ServerStream: ss, ctx: withClass(ss.Context(), classOfMethod(info.FullMethod))})
}

type classedStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s classedStream) Context() context.Context { return s.ctx }
