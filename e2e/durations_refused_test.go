package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/beaconhq/beacon/api/beaconpb"
	"github.com/beaconhq/beacon/client"
	"github.com/beaconhq/beacon/internal/testcluster"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
)

// durationField is one google.protobuf.Duration field of the API, sent
// through send with every other field well formed.
type durationField struct {
	name     string        // as the refusal must name it
	min, max time.Duration // the documented range of a present value
	send     func(ctx context.Context, d *durationpb.Duration) error
}

// apiDurationFields lists every duration field a request carries, each
// with a call that sends it to agent a in session sess.
func apiDurationFields(cl *client.Client, sess string) []durationField {
	conn := cl.Conn()
	lc, ec, qc := beaconpb.NewLockClient(conn), beaconpb.NewElectionClient(conn), beaconpb.NewQueueClient(conn)
	register := func(ctx context.Context, c *beaconpb.Check) error {
		_, err := cl.Registry.Register(ctx, &beaconpb.RegisterRequest{Instance: &beaconpb.Instance{Service: "dur", Id: "dur1", Port: 80}, Check: c})
		return err
	}
	const day, year = 24 * time.Hour, 365 * 24 * time.Hour
	// A receipt well formed but for no reservation: a bad duration is
	// named before the receipt is looked at.
	const receipt = "dur/1/00000000000000000000000000000000/1"
	return []durationField{
		{"timeout", 0, day, func(ctx context.Context, d *durationpb.Duration) error {
			_, err := lc.Acquire(ctx, &beaconpb.LockAcquireRequest{Name: "dur", SessionId: sess, Timeout: d})
			return err
		}},
		{"timeout", 0, day, func(ctx context.Context, d *durationpb.Duration) error {
			_, err := ec.Campaign(ctx, &beaconpb.ElectionCampaignRequest{Name: "dur", SessionId: sess, Timeout: d})
			return err
		}},
		{"ttl", time.Second, day, func(ctx context.Context, d *durationpb.Duration) error {
			_, err := openSessionWith(ctx, cl, &beaconpb.OpenSession{Ttl: d})
			return err
		}},
		{"check.ttl", 0, day, func(ctx context.Context, d *durationpb.Duration) error {
			return register(ctx, &beaconpb.Check{Ttl: d})
		}},
		{"check.interval", 0, day, func(ctx context.Context, d *durationpb.Duration) error {
			return register(ctx, &beaconpb.Check{Tcp: "127.0.0.1:1", Interval: d})
		}},
		{"check.timeout", 0, day, func(ctx context.Context, d *durationpb.Duration) error {
			return register(ctx, &beaconpb.Check{Tcp: "127.0.0.1:1", Timeout: d})
		}},
		{"check.deregister_critical_after", 0, year, func(ctx context.Context, d *durationpb.Duration) error {
			return register(ctx, &beaconpb.Check{Tcp: "127.0.0.1:1", DeregisterCriticalAfter: d})
		}},
		{"delay", 0, day, func(ctx context.Context, d *durationpb.Duration) error {
			_, err := qc.Enqueue(ctx, &beaconpb.QueueEnqueueRequest{Queue: "dur", Payload: []byte("x"), Delay: d})
			return err
		}},
		{"dedup_window", time.Second, day, func(ctx context.Context, d *durationpb.Duration) error {
			_, err := qc.Enqueue(ctx, &beaconpb.QueueEnqueueRequest{Queue: "dur", Payload: []byte("x"), DedupId: "d", DedupWindow: d})
			return err
		}},
		{"visibility", time.Millisecond, day, func(ctx context.Context, d *durationpb.Duration) error {
			_, err := qc.Reserve(ctx, &beaconpb.QueueReserveRequest{Queue: "dur-empty", Visibility: d})
			return err
		}},
		{"wait", 0, day, func(ctx context.Context, d *durationpb.Duration) error {
			_, err := qc.Reserve(ctx, &beaconpb.QueueReserveRequest{Queue: "dur-empty", Wait: d})
			return err
		}},
		{"delay", 0, day, func(ctx context.Context, d *durationpb.Duration) error {
			_, err := qc.Nack(ctx, &beaconpb.QueueNackRequest{Receipt: receipt, Delay: d})
			return err
		}},
		{"visibility", time.Millisecond, day, func(ctx context.Context, d *durationpb.Duration) error {
			_, err := qc.Extend(ctx, &beaconpb.QueueExtendRequest{Receipt: receipt, Visibility: d})
			return err
		}},
	}
}

// openSessionWith opens a session with open on cl's connection and returns
// the agent's first answer; the session ends with ctx.
func openSessionWith(ctx context.Context, cl *client.Client, open *beaconpb.OpenSession) (*beaconpb.SessionOpened, error) {
	st, err := cl.Sessions.Open(ctx)
	if err != nil {
		return nil, err
	}
	if err := st.Send(&beaconpb.SessionRequest{Kind: &beaconpb.SessionRequest_Open{Open: open}}); err != nil {
		return nil, err
	}
	ev, err := st.Recv()
	if err != nil {
		return nil, err
	}
	return ev.GetOpened(), nil
}

// TestAPIDurationsRefused: every duration field of the API refuses an
// invalid Duration (nanos out of range, seconds and nanos of opposite
// signs), a negative one, one over its maximum and one under its minimum
// with INVALID_ARGUMENT naming the field, through a real agent, and
// accepts its minimum and maximum (the call may then fail for other
// reasons, never for the duration).
func TestAPIDurationsRefused(t *testing.T) {
	c := testcluster.New(t)
	a := c.Host("a")
	a.Start()
	a.WaitReady(readyWithin)
	cl, err := client.New(a.APIAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	sess, err := cl.NewSession(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()

	for _, f := range apiDurationFields(cl, sess.ID) {
		bad := map[string]*durationpb.Duration{
			"nanos out of range": {Seconds: 1, Nanos: 1e9},
			"signs differ":       {Seconds: 1, Nanos: -1},
			"negative":           durationpb.New(-time.Millisecond),
			"over the maximum":   durationpb.New(f.max + time.Nanosecond),
			"10001 years":        {Seconds: 10001 * 366 * 24 * 3600},
		}
		if f.min > 0 {
			bad["under the minimum"] = durationpb.New(f.min - time.Nanosecond)
		}
		for what, d := range bad {
			cctx, ccancel := context.WithTimeout(ctx, 10*time.Second)
			err := f.send(cctx, d)
			ccancel()
			if s := status.Convert(err); s.Code() != codes.InvalidArgument || !strings.HasPrefix(s.Message(), f.name+": ") {
				t.Errorf("%s %s (%v): got %v %q, want InvalidArgument naming %s", f.name, what, d, s.Code(), s.Message(), f.name)
			}
		}
		// The bounds themselves are taken: whatever the call answers, it
		// is not a refusal of the duration.
		for _, d := range []time.Duration{f.min, f.max} {
			cctx, ccancel := context.WithTimeout(ctx, 2*time.Second)
			err := f.send(cctx, durationpb.New(d))
			ccancel()
			if s := status.Convert(err); s.Code() == codes.InvalidArgument && strings.HasPrefix(s.Message(), f.name+": ") {
				t.Errorf("%s %v: refused: %q", f.name, d, s.Message())
			}
		}
	}
}
