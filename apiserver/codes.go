package apiserver

import (
	"context"
	"errors"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// contextCodes gives a handler's bare context error its gRPC code: a
// client that went away (Canceled) or a deadline that passed
// (DeadlineExceeded). gRPC would answer Unknown, which the logging
// interceptor logs at ERROR: a client that simply hangs up is not an
// error of the agent's, and a burst of them must not flood the log.
func contextCodes(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	switch {
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, err.Error())
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, err.Error())
	}
	return err
}

func contextCodesUnary(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	resp, err := h(ctx, req)
	return resp, contextCodes(err)
}

func contextCodesStream(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	return contextCodes(h(srv, ss))
}
