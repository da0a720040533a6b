package client

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/beaconhq/beacon/api/beaconpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
)

// A reservation made through the SDK records this process's pid; its
// Progress shows in QueueStats' in-flight listing, a bad percent is
// refused naming it, and the report goes when the session closes.
func TestReservationProgress(t *testing.T) {
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
	q := beaconpb.NewQueueClient(c.Conn())
	if _, err := q.Enqueue(ctx, &beaconpb.QueueEnqueueRequest{Queue: "jobs", Payload: []byte("job")}); err != nil {
		t.Fatal(err)
	}
	r, err := c.Reserve(ctx, sess, &beaconpb.QueueReserveRequest{Queue: "jobs", Visibility: durationpb.New(time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Progress(ctx, 42, "halfway"); err != nil {
		t.Fatal(err)
	}
	s, err := c.QueueStats(ctx, "jobs", true)
	if err != nil {
		t.Fatal(err)
	}
	if m := s.InFlightMessages; len(m) != 1 || m[0].GetPercent() != 42 || m[0].ProgressMessage != "halfway" || int(m[0].Pid) != os.Getpid() {
		t.Fatalf("in flight: %v; want 42%% \"halfway\" by pid %d", m, os.Getpid())
	}
	for _, bad := range []int{-1, 101} {
		if err := r.Progress(ctx, bad, ""); status.Code(err) != codes.InvalidArgument {
			t.Errorf("progress %d: %v; want InvalidArgument", bad, err)
		}
	}
	if err := sess.Close(); err != nil {
		t.Fatal(err)
	}
	if err := pollUntil(10*time.Second, func() bool {
		s, err := c.QueueStats(ctx, "jobs", true)
		return err == nil && len(s.InFlightMessages) == 0 && s.Ready == 1
	}); err != nil {
		t.Fatalf("after the session closed: %v", err)
	}
}
