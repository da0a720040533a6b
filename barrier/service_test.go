package barrier_test

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/beaconhq/beacon/api/beaconpb"
	"github.com/beaconhq/beacon/barrier"
	"github.com/beaconhq/beacon/client"
	"github.com/beaconhq/beacon/internal/etcdtest"
	"github.com/beaconhq/beacon/session"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
)

// serve runs the Session and Barrier services over real gRPC on
// loopback, as the agent does, with a round limit of 4.
func serve(t *testing.T) (*clientv3.Client, *client.Client) {
	t.Helper()
	cli, _ := etcdtest.New(t)
	m := session.NewManager(cli)
	srv := grpc.NewServer()
	beaconpb.RegisterSessionServer(srv, session.NewService(m))
	beaconpb.RegisterBarrierServer(srv, barrier.NewService(cli, m, "/beacon/", barrier.WithNode("n1"), barrier.WithLimit(4)))
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(func() { m.CloseAll(0); srv.Stop() })
	c, err := client.New(lis.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return cli, c
}

func openSession(t *testing.T, c *client.Client) *client.Session {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := c.NewSession(ctx, client.WithTTL(3*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func wantCode(t *testing.T, err error, code codes.Code, contains string) {
	t.Helper()
	s, _ := status.FromError(err)
	if s.Code() != code || !strings.Contains(s.Message(), contains) {
		t.Fatalf("got %v, want %v naming %q", err, code, contains)
	}
}

// enter is one Enter call through gRPC, to its first error or TRIPPED.
func enter(ctx context.Context, c *client.Client, req *beaconpb.BarrierEnterRequest) (*beaconpb.BarrierEnterEvent, error) {
	st, err := beaconpb.NewBarrierClient(c.Conn()).Enter(ctx, req)
	if err != nil {
		return nil, err
	}
	for {
		ev, err := st.Recv()
		if err != nil || ev.State == beaconpb.BarrierState_BARRIER_STATE_TRIPPED {
			return ev, err
		}
	}
}

func TestServiceBadInput(t *testing.T) {
	_, c := serve(t)
	ctx := context.Background()
	s := openSession(t, c)
	for _, tc := range []struct {
		req      *beaconpb.BarrierEnterRequest
		code     codes.Code
		contains string
	}{
		{&beaconpb.BarrierEnterRequest{Name: "", SessionId: s.ID, Count: 2}, codes.InvalidArgument, "name"},
		{&beaconpb.BarrierEnterRequest{Name: "a/b", SessionId: s.ID, Count: 2}, codes.InvalidArgument, "name"},
		{&beaconpb.BarrierEnterRequest{Name: "x", SessionId: s.ID, Count: 0}, codes.InvalidArgument, "count"},
		{&beaconpb.BarrierEnterRequest{Name: "x", SessionId: s.ID, Count: 5}, codes.ResourceExhausted, "(max-barrier-participants 4)"},
		{&beaconpb.BarrierEnterRequest{Name: "x", SessionId: s.ID, Count: 2, Timeout: durationpb.New(-time.Millisecond)}, codes.InvalidArgument, "timeout"},
		{&beaconpb.BarrierEnterRequest{Name: "x", SessionId: s.ID, Count: 2, Pid: -1}, codes.InvalidArgument, "pid"},
		{&beaconpb.BarrierEnterRequest{Name: "x", Count: 2}, codes.InvalidArgument, "session_id"},
		{&beaconpb.BarrierEnterRequest{Name: "x", SessionId: "nope", Count: 2}, codes.NotFound, "no session"},
	} {
		_, err := enter(ctx, c, tc.req)
		wantCode(t, err, tc.code, tc.contains)
	}
	bc := beaconpb.NewBarrierClient(c.Conn())
	_, err := bc.Leave(ctx, &beaconpb.BarrierLeaveRequest{Name: "x", SessionId: s.ID, Round: 0, Rev: 1})
	wantCode(t, err, codes.InvalidArgument, "round")
	st, err := bc.WaitLeft(ctx, &beaconpb.BarrierWaitLeftRequest{Name: "x", Round: 1})
	if err == nil {
		_, err = st.Recv()
	}
	wantCode(t, err, codes.InvalidArgument, "cutoff")
}

func TestServiceTimeoutNamesThePresent(t *testing.T) {
	cli, c := serve(t)
	s := openSession(t, c)
	_, err := enter(context.Background(), c, &beaconpb.BarrierEnterRequest{Name: "t", SessionId: s.ID, Count: 3, Timeout: durationpb.New(300 * time.Millisecond), Pid: 42})
	wantCode(t, err, codes.DeadlineExceeded, `barrier "t": timed out after 300ms waiting for 2 of 3; present: n1 (pid 42)`)
	waitKeys(t, cli, "/beacon/barriers/t/rounds/", 0)
}

// TestSDKRound: three sessions enter through client.Barrier, work, leave;
// WaitLeft returns once the last has left, and a participant whose key
// is deleted behind its back loses its entry at once.
func TestSDKRound(t *testing.T) {
	cli, c := serve(t)
	ctx := context.Background()
	entries := make(chan *client.BarrierEntry, 3)
	errs := make(chan error, 3)
	for range 3 {
		s := openSession(t, c)
		go func() {
			e, err := c.Barrier(s, "sdk", 3).Enter(ctx)
			if err != nil {
				errs <- err
				return
			}
			entries <- e
		}()
	}
	var es []*client.BarrierEntry
	for len(es) < 3 {
		select {
		case e := <-entries:
			es = append(es, e)
		case err := <-errs:
			t.Fatal(err)
		case <-time.After(10 * time.Second):
			t.Fatalf("%d of 3 entered", len(es))
		}
	}
	if len(es[0].Members) != 3 || es[0].Round != 1 || es[0].Cutoff == 0 {
		t.Fatalf("entry %+v", es[0])
	}
	left := make(chan error, 1)
	remaining := make(chan int, 64)
	go func() {
		left <- es[0].WaitLeft(ctx, func(ps []*beaconpb.BarrierParticipant) {
			select {
			case remaining <- len(ps):
			default:
			}
		})
	}()
	if err := es[0].Leave(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Delete(ctx, es[1].Key); err != nil { // by hand: that participant is out
		t.Fatal(err)
	}
	select {
	case <-es[1].Lost():
		if es[1].Err() == nil || !strings.Contains(es[1].Err().Error(), "gone") {
			t.Fatalf("lost with %v", es[1].Err())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the entry whose key was deleted is not lost")
	}
	waitRemaining(t, remaining, 1)
	select {
	case err := <-left:
		t.Fatalf("WaitLeft returned (%v) with one member inside", err)
	default:
	}
	if err := es[2].Leave(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-left:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("WaitLeft did not return once all had left")
	}
}

// TestSessionEndWithdraws: a participant whose session closes while it
// waits is out of the barrier at once, and its Enter fails.
func TestSessionEndWithdraws(t *testing.T) {
	cli, c := serve(t)
	s := openSession(t, c)
	done := make(chan error, 1)
	go func() {
		_, err := c.Barrier(s, "end", 2).Enter(context.Background())
		done <- err
	}()
	waitKeys(t, cli, "/beacon/barriers/end/rounds/", 1)
	s.Close()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("Enter succeeded after its session closed")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Enter did not end with its session")
	}
	waitKeys(t, cli, "/beacon/barriers/end/rounds/", 0)
}
