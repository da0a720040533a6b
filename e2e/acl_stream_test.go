package e2e

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/beaconhq/beacon/api/beaconpb"
	"github.com/beaconhq/beacon/client"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestStreamRefusalReachesTheCaller: an agent that refuses a stream at
// once (as the ACL gate refuses Session.Open without a token) may end it
// before the client's first message goes out; the SDK's caller must hear
// the agent's status, not the bare io.EOF of that Send ("beacon: EOF").
// The client here waits until the stream has ended before its first
// Send, which is the race lost every time.
func TestStreamRefusalReachesTheCaller(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refuse := func(any, grpc.ServerStream, *grpc.StreamServerInfo, grpc.StreamHandler) error {
		return status.Error(codes.Unauthenticated, "this call needs a token")
	}
	srv := grpc.NewServer(grpc.StreamInterceptor(refuse))
	beaconpb.RegisterSessionServer(srv, beaconpb.UnimplementedSessionServer{})
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)

	// Runs inside the SDK's own interceptors: the stream is handed back
	// only once the agent has ended it.
	late := func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string,
		streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
		s, err := streamer(ctx, desc, cc, method, opts...)
		if err != nil {
			return nil, err
		}
		// Header waits for the agent's answer: for a refusal, the
		// trailers that end the stream.
		_, _ = s.Header()
		return s, nil
	}
	cl, err := client.New(lis.Addr().String(), client.WithDialOptions(grpc.WithChainStreamInterceptor(late)))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err = cl.NewSession(ctx)
	if status.Code(err) != codes.Unauthenticated {
		t.Fatalf("NewSession on a refused stream: %v; want the agent's Unauthenticated", err)
	}
}
