package apiserver

import (
	"context"
	"errors"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/beaconhq/beacon/api/beaconpb"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

// startServerSocket is startServer with a unix socket too; it returns
// the TCP address and the socket's path.
func startServerSocket(t *testing.T, l Limits) (string, string) {
	t.Helper()
	s := New(zap.NewNop(), WithLimits(l))
	beaconpb.RegisterSessionServer(s.GRPC(), heldSessions{})
	socket := filepath.Join(t.TempDir(), "api.sock")
	if err := s.Listen("127.0.0.1:0", socket); err != nil {
		t.Fatal(err)
	}
	s.Serve()
	t.Cleanup(func() { s.Stop(time.Second) })
	return s.Addr(), socket
}

// dialFrom is dial with the connection's source address set to ip.
func dialFrom(t *testing.T, addr, ip string) *grpc.ClientConn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	return dial(t, addr, grpc.WithContextDialer(func(ctx context.Context, a string) (net.Conn, error) {
		return d.DialContext(ctx, "tcp", a)
	}))
}

func dialUnix(t *testing.T, socket string) *grpc.ClientConn {
	t.Helper()
	return dial(t, "unix:"+socket)
}

// wantConnRefused: a call on a connection the server closed as soon as
// it accepted it fails Unavailable, well before its deadline.
func wantConnRefused(t *testing.T, cc *grpc.ClientConn, what string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{})
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("%s: got %v, want the connection refused (Unavailable) at once", what, err)
	}
}

// The calls in flight on the agent are bounded over every connection
// (MaxStreams): the call past it is refused naming max-streams, on
// whichever connection; the unix socket has a pool of its own, so the
// operator still gets in; a slot frees when a call ends.
func TestStreamsPerAgent(t *testing.T) {
	addr, socket := startServerSocket(t, Limits{MaxStreams: 10, MaxStreamsPerConn: 8})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	a, b, c := dial(t, addr), dial(t, addr), dial(t, addr)
	first, cancelFirst := context.WithCancel(ctx)
	if err := openWatch(first, a); err != nil {
		t.Fatal(err)
	}
	for i := 1; i < 10; i++ {
		cc := a
		if i >= 6 {
			cc = b
		}
		if err := openWatch(ctx, cc); err != nil {
			t.Fatalf("stream %d: %v", i+1, err)
		}
	}
	wantLimit(t, openWatch(ctx, c), "this agent has 10 calls in flight, its limit (max-streams 10)")
	_, err := healthpb.NewHealthClient(c).Check(ctx, &healthpb.HealthCheckRequest{})
	wantLimit(t, err, "max-streams 10")
	// Whichever connection: a, under its own limit, hears of the agent's.
	for i := 6; i < 8; i++ {
		wantLimit(t, openWatch(ctx, a), "max-streams 10")
	}

	u := dialUnix(t, socket)
	for i := 0; i < 8; i++ {
		if err := openWatch(ctx, u); err != nil {
			t.Fatalf("unix socket stream %d beside a full TCP pool: %v", i+1, err)
		}
	}

	cancelFirst()
	deadline := time.Now().Add(20 * time.Second)
	for openWatch(ctx, c) != nil {
		if time.Now().After(deadline) {
			t.Fatal("no slot came free 20s after a stream ended")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// One client address may hold MaxConnsPerClient connections; the next
// is closed at once (its call fails Unavailable, it does not hang),
// while another address still connects; a slot frees when a connection
// closes. On the unix socket the per-client bound does not apply.
func TestConnectionsPerClient(t *testing.T) {
	addr, socket := startServerSocket(t, Limits{MaxConns: 100, MaxConnsPerClient: 3})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var held []*grpc.ClientConn
	for i := 0; i < 3; i++ {
		cc := dialFrom(t, addr, "127.0.0.1")
		if err := openWatch(ctx, cc); err != nil {
			t.Fatalf("connection %d: %v", i+1, err)
		}
		held = append(held, cc)
	}
	wantConnRefused(t, dialFrom(t, addr, "127.0.0.1"), "a 4th connection from 127.0.0.1")
	if err := openWatch(ctx, dialFrom(t, addr, "127.0.0.2")); err != nil {
		t.Fatalf("a connection from 127.0.0.2: %v", err)
	}
	for i := 0; i < 5; i++ {
		if err := openWatch(ctx, dialUnix(t, socket)); err != nil {
			t.Fatalf("unix socket connection %d: %v", i+1, err)
		}
	}

	held[0].Close()
	deadline := time.Now().Add(20 * time.Second)
	for {
		cc := dialFrom(t, addr, "127.0.0.1")
		cctx, ccancel := context.WithTimeout(ctx, 5*time.Second)
		err := openWatch(cctx, cc)
		ccancel()
		if err == nil {
			break
		}
		cc.Close()
		if time.Now().After(deadline) {
			t.Fatalf("no connection slot came free 20s after one closed: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// The agent holds at most MaxConns TCP connections, whatever their
// addresses; the unix socket has as many of its own.
func TestConnectionsPerAgent(t *testing.T) {
	addr, socket := startServerSocket(t, Limits{MaxConns: 4, MaxConnsPerClient: 100})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i := 0; i < 4; i++ {
		if err := openWatch(ctx, dialFrom(t, addr, "127.0.0."+string(rune('1'+i)))); err != nil {
			t.Fatalf("connection %d: %v", i+1, err)
		}
	}
	wantConnRefused(t, dialFrom(t, addr, "127.0.0.9"), "a 5th connection")
	for i := 0; i < 4; i++ {
		if err := openWatch(ctx, dialUnix(t, socket)); err != nil {
			t.Fatalf("unix socket connection %d: %v", i+1, err)
		}
	}
	wantConnRefused(t, dialUnix(t, socket), "a 5th unix socket connection")
}

// A client is its IPv4 address, or the /64 of its IPv6 one (a host holds
// a /64 whole); a unix socket peer is no client address.
func TestClientKey(t *testing.T) {
	for _, tc := range []struct {
		addr net.Addr
		want string
	}{
		{&net.TCPAddr{IP: net.ParseIP("127.0.0.2"), Port: 1}, "127.0.0.2/32"},
		{&net.TCPAddr{IP: net.ParseIP("::ffff:10.1.2.3"), Port: 1}, "10.1.2.3/32"},
		{&net.TCPAddr{IP: net.ParseIP("2001:db8:1:2:3:4:5:6"), Port: 1}, "2001:db8:1:2::/64"},
		{&net.UnixAddr{Name: "@", Net: "unix"}, ""},
	} {
		p, ok := clientOf(tc.addr)
		got := ""
		if ok {
			got = p.String()
		}
		if got != tc.want {
			t.Errorf("%v: client %q, want %q", tc.addr, got, tc.want)
		}
	}
}

// A connection that never speaks (no TLS, no HTTP/2 preface) is closed
// after HandshakeTimeout, not gRPC's default 120 s, and gives back its
// slot: with one connection per client, the client connects again.
func TestSilentConnectionFreesItsSlot(t *testing.T) {
	addr, _ := startServerSocket(t, Limits{MaxConnsPerClient: 1, HandshakeTimeout: 300 * time.Millisecond})
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.1")}}
	silent, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	// Bounded well below gRPC's default of 120 s.
	_ = silent.SetReadDeadline(time.Now().Add(30 * time.Second))
	// The server speaks first (its SETTINGS), then hangs up.
	buf := make([]byte, 1024)
	for {
		_, err := silent.Read(buf)
		if err == nil {
			continue
		}
		if isTimeout(err) {
			t.Fatalf("a connection that never spoke is still open after 30s: %v", err)
		}
		break
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := openWatch(ctx, dialFrom(t, addr, "127.0.0.1")); err != nil {
		t.Fatalf("the client's next connection: %v", err)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
