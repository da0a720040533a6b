package apiserver

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/beaconhq/beacon/api/beaconpb"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

// heldSessions is a Session service whose streams stay open until their
// client ends them: what the limits count, without an etcd behind it.
type heldSessions struct {
	beaconpb.UnimplementedSessionServer
}

func (heldSessions) Open(stream beaconpb.Session_OpenServer) error {
	if err := stream.Send(&beaconpb.SessionEvent{Kind: &beaconpb.SessionEvent_Opened{Opened: &beaconpb.SessionOpened{}}}); err != nil {
		return err
	}
	<-stream.Context().Done()
	return nil
}

func startServer(t *testing.T, l Limits) string {
	t.Helper()
	s := New(zap.NewNop(), WithLimits(l))
	beaconpb.RegisterSessionServer(s.GRPC(), heldSessions{})
	if err := s.Listen("127.0.0.1:0", ""); err != nil {
		t.Fatal(err)
	}
	s.Serve()
	t.Cleanup(func() { s.Stop(time.Second) })
	return s.Addr()
}

func dial(t *testing.T, addr string, opts ...grpc.DialOption) *grpc.ClientConn {
	t.Helper()
	cc, err := grpc.NewClient(addr, append([]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

// openWatch opens a health Watch stream and waits for its first answer:
// a stream the server holds open.
func openWatch(ctx context.Context, cc *grpc.ClientConn) error {
	w, err := healthpb.NewHealthClient(cc).Watch(ctx, &healthpb.HealthCheckRequest{})
	if err == nil {
		_, err = w.Recv()
	}
	return err
}

func openSession(ctx context.Context, cc *grpc.ClientConn) error {
	st, err := beaconpb.NewSessionClient(cc).Open(ctx)
	if err == nil {
		_, err = st.Recv()
	}
	return err
}

func wantLimit(t *testing.T, err error, limit string) {
	t.Helper()
	if st := status.Convert(err); st.Code() != codes.ResourceExhausted || !strings.Contains(st.Message(), limit) {
		t.Fatalf("got %v, want ResourceExhausted naming %q", err, limit)
	}
}

// One connection may hold MaxStreamsPerConn calls in flight; the next is
// refused with an error naming the limit, other connections are not
// affected, and a slot frees when a stream ends.
func TestStreamsPerConnection(t *testing.T) {
	addr := startServer(t, Limits{MaxStreamsPerConn: 8, MaxSessionsPerConn: 4})
	cc := dial(t, addr)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	first, cancelFirst := context.WithCancel(ctx)
	if err := openWatch(first, cc); err != nil {
		t.Fatal(err)
	}
	for i := 1; i < 8; i++ {
		if err := openWatch(ctx, cc); err != nil {
			t.Fatalf("stream %d: %v", i+1, err)
		}
	}
	wantLimit(t, openWatch(ctx, cc), "max-streams-per-connection 8")
	// A unary call counts as well.
	_, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{})
	wantLimit(t, err, "max-streams-per-connection 8")

	if err := openWatch(ctx, dial(t, addr)); err != nil {
		t.Fatalf("another connection: %v", err)
	}
	cancelFirst()
	deadline := time.Now().Add(20 * time.Second)
	for {
		err := openWatch(ctx, cc)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no slot came free 20s after a stream ended: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// One connection may open MaxSessionsPerConn sessions; the next is
// refused naming the limit, while other calls still go through.
func TestSessionsPerConnection(t *testing.T) {
	addr := startServer(t, Limits{MaxStreamsPerConn: 16, MaxSessionsPerConn: 3})
	cc := dial(t, addr)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i := 0; i < 3; i++ {
		if err := openSession(ctx, cc); err != nil {
			t.Fatalf("session %d: %v", i+1, err)
		}
	}
	wantLimit(t, openSession(ctx, cc), "max-sessions-per-connection 3")
	if err := openWatch(ctx, cc); err != nil {
		t.Fatalf("a watch beside the sessions: %v", err)
	}
	if err := openSession(ctx, dial(t, addr)); err != nil {
		t.Fatalf("a session on another connection: %v", err)
	}
}
