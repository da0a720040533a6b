package client

import (
	"context"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/beaconhq/beacon/api/beaconpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/durationpb"
)

// A worker that waits for a message (Reserve with a wait, as `beacon queue
// reserve Q --wait 60s -- CMD` does) gets a reservation whose visibility
// runs from when the agent reserved it. The SDK measures the hold's own
// deadline from before the call, so the time spent waiting is taken off the
// visibility: a reservation made after a wait of most of the visibility is
// lost at once, and `beacon queue reserve -- CMD` refuses to start CMD
// ("less than the grace"), nacks the message (burning a delivery) and exits.
func TestReviewReserveWaitEatsVisibility(t *testing.T) {
	a := startTestAgent(t)
	c, err := New(a.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	sess, err := c.NewSession(ctx, WithTTL(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sess.Close() })

	const visibility = 3 * time.Second
	q := beaconpb.NewQueueClient(c.Conn())
	go func() {
		time.Sleep(2500 * time.Millisecond) // the worker has waited 2.5s when the job comes
		_, _ = q.Enqueue(context.Background(), &beaconpb.QueueEnqueueRequest{Queue: "jobs", Payload: []byte("job")})
	}()
	r, err := c.Reserve(ctx, sess, &beaconpb.QueueReserveRequest{Queue: "jobs",
		Visibility: durationpb.New(visibility), Wait: durationpb.New(20 * time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	left := r.Remaining()
	t.Logf("reservation made just now with visibility %s: %s left", visibility, left.Round(time.Millisecond))
	// The agent's reservation runs visibility from now; the CLI's grace
	// default would be visibility/4.
	if grace := visibility / 4; left <= grace {
		t.Errorf("a fresh reservation (visibility %s) has %s left, not more than the grace %s: "+
			"beacon queue reserve -- CMD would refuse to run CMD and nack the message", visibility, left.Round(time.Millisecond), grace)
	}
	select {
	case <-r.Lost():
		t.Fatalf("a fresh, healthy reservation (visibility %s, extended every %s) was lost %s after it was made: %v",
			visibility, visibility/3, (left - r.Remaining()).Round(time.Millisecond), r.Err())
	case <-time.After(visibility / 2):
	}
	_ = r.Ack(context.Background())
}

// A Go application that only registers an instance (the SDK's automatic
// session) asks for confirmations like any session, which marks it a
// holder. When the agent stops, CloseAll then waits for it and abandons it
// instead of revoking its lease: the instance stays registered (answered by
// every other agent's DNS) for a whole TTL after its agent stopped, unlike
// what the agent's stop promises ("this host's instances leave every
// agent's answers now, not after a TTL").
func TestReviewRegistrationOnlySessionAbandonedOnStop(t *testing.T) {
	a := startTestAgent(t)
	c, err := New(a.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := c.Register(ctx, &beaconpb.Instance{Service: "web", Id: "w1", Port: 80}, nil); err != nil {
		t.Fatal(err)
	}
	s := c.current()
	// The automatic session (TTL 10s) asks every 2.5s; wait for one answer.
	time.Sleep(3 * time.Second)

	start := time.Now()
	a.sessions.CloseAll(time.Second) // the agent stops
	took := time.Since(start)
	id, err := parseLease(s.Period().ID)
	if err != nil {
		t.Fatal(err)
	}
	ttl, err := a.cli.TimeToLive(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if ttl.TTL > 0 {
		t.Errorf("after the agent stopped (CloseAll took %s), the lease of a registration-only session still lives %ds: "+
			"the instance lingers in every agent's answers instead of leaving at once", took.Round(time.Millisecond), ttl.TTL)
	}
}

func parseLease(hex string) (clientv3.LeaseID, error) {
	var id int64
	for _, ch := range hex {
		id <<= 4
		switch {
		case ch >= '0' && ch <= '9':
			id |= int64(ch - '0')
		case ch >= 'a' && ch <= 'f':
			id |= int64(ch-'a') + 10
		}
	}
	return clientv3.LeaseID(id), nil
}

// stuckSessionServer opens sessions and then stops reading the stream, as
// an agent that is paused (SIGSTOP) or wedged does.
type stuckSessionServer struct {
	beaconpb.UnimplementedSessionServer
}

func (stuckSessionServer) Open(stream beaconpb.Session_OpenServer) error {
	if _, err := stream.Recv(); err != nil {
		return err
	}
	if err := stream.Send(&beaconpb.SessionEvent{Kind: &beaconpb.SessionEvent_Opened{Opened: &beaconpb.SessionOpened{
		SessionId: "s1", Ttl: durationpb.New(10 * time.Second), LeaseId: "abc"}}}); err != nil {
		return err
	}
	<-stream.Context().Done()
	return stream.Context().Err()
}

// Session.send holds sendMu across a blocking stream.Send. Once the agent
// stops reading and the stream's flow-control window is full, a send
// blocks for as long as the agent does, holding sendMu; Close then blocks
// on sendMu before its own 5 s bound ever starts, and with it whatever
// closes the session (beacon lock's exit after CMD was killed), the recv
// goroutine (newLease → ask) and the period's lapse (lapsed → ask).
func TestReviewCloseBlocksBehindAStuckSend(t *testing.T) {
	srv := grpc.NewServer()
	beaconpb.RegisterSessionServer(srv, stuckSessionServer{})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop) // closes the connection: what finally unblocks the sends
	c, err := New(lis.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sess, err := c.NewSession(ctx, WithTTL(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	// Questions pile up unread (a long agent pause does the same at one per
	// confirm interval); stop once a send blocks.
	var asked atomic.Int64
	go func() {
		for i := 0; i < 2_000_000; i++ {
			sess.ask()
			asked.Add(1)
		}
	}()
	for last, stalled := int64(-1), 0; stalled < 5; time.Sleep(100 * time.Millisecond) {
		n := asked.Load()
		if n == last {
			stalled++
		} else {
			stalled = 0
		}
		last = n
		if n >= 2_000_000 {
			t.Skip("the sends never blocked")
		}
	}
	t.Logf("a send blocked after %d unread questions", asked.Load())
	closed := make(chan struct{})
	go func() { _ = sess.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("Session.Close did not return within 10s (its own bound is 5s): it waits on sendMu, held by a send the agent does not read")
	}
}
