package healthcheck

import (
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// grpcHealthServer starts a real gRPC server with the standard health
// service on a loopback port. The whole server ("") reports SERVING.
func grpcHealthServer(t *testing.T) (string, *health.Server, *grpc.Server) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer()
	hs := health.NewServer()
	healthpb.RegisterHealthServer(s, hs)
	go s.Serve(ln)
	t.Cleanup(s.Stop)
	return ln.Addr().String(), hs, s
}

func TestGRPCWholeServer(t *testing.T) {
	t.Parallel()
	addr, _, s := grpcHealthServer(t)
	_, rec := start(t, Definition{GRPC: addr, Interval: 50 * time.Millisecond}, Result{Status: StatusCritical}, nil)
	if e := rec.waitStatus(StatusPassing); e.Output != "gRPC health check "+addr+": SERVING" {
		t.Fatalf("output %q", e.Output)
	}

	s.Stop() // gone: no answer at all
	if e := rec.waitStatus(StatusCritical); !strings.Contains(e.Output, "Unavailable") {
		t.Fatalf("output %q", e.Output)
	}
}

func TestGRPCServiceSwitches(t *testing.T) {
	t.Parallel()
	addr, hs, _ := grpcHealthServer(t)
	hs.SetServingStatus("pkg.Orders", healthpb.HealthCheckResponse_NOT_SERVING)
	target := addr + "/pkg.Orders"
	_, rec := start(t, Definition{GRPC: target, Interval: 50 * time.Millisecond}, Result{Status: StatusPassing}, nil)

	if e := rec.waitStatus(StatusCritical); e.Output != "gRPC health check "+target+": NOT_SERVING" {
		t.Fatalf("output %q", e.Output)
	}
	hs.SetServingStatus("pkg.Orders", healthpb.HealthCheckResponse_SERVING)
	if e := rec.waitStatus(StatusPassing); e.Output != "gRPC health check "+target+": SERVING" {
		t.Fatalf("output %q", e.Output)
	}
	hs.SetServingStatus("pkg.Orders", healthpb.HealthCheckResponse_NOT_SERVING)
	rec.waitStatus(StatusCritical)
}

func TestGRPCUnknownService(t *testing.T) {
	t.Parallel()
	addr, _, _ := grpcHealthServer(t)
	_, rec := start(t, Definition{GRPC: addr + "/no.such.Service", Interval: 50 * time.Millisecond},
		Result{Status: StatusPassing}, nil)
	if e := rec.waitStatus(StatusCritical); !strings.Contains(e.Output, "service unknown") {
		t.Fatalf("output %q", e.Output)
	}
}
