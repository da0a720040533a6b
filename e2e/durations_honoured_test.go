package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/beaconhq/beacon/api/beaconpb"
	"github.com/beaconhq/beacon/client"
	"github.com/beaconhq/beacon/internal/testcluster"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
)

// TestAPIDurationsHonoured: each duration field of the API, absent, means
// its documented default, and a valid value is the one the agent uses:
// seen in etcd (the session's lease), in the data dir (a check's
// definition), in the answers (a reservation's deadline), or in what
// happens (a wait that ends with the timeout, not with the call).
func TestAPIDurationsHonoured(t *testing.T) {
	c := testcluster.New(t)
	a := c.Host("a")
	a.Start()
	a.WaitReady(readyWithin)
	cl, err := client.New(a.APIAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	t.Run("session ttl", func(t *testing.T) { sessionTTLs(ctx, t, a, cl) })
	t.Run("lock and election timeout", func(t *testing.T) { waitTimeouts(ctx, t, cl) })
	t.Run("check durations", func(t *testing.T) { checkDurations(ctx, t, a, cl) })
	t.Run("queue durations", func(t *testing.T) { queueDurations(ctx, t, cl) })
	// Last: it stops the agent.
	t.Run("agent stopping wait", func(t *testing.T) { stoppingWait(ctx, t, a, cl) })
}

// stoppingWait: an agent stopping tells each session how long it waits
// for the session to close.
func stoppingWait(ctx context.Context, t *testing.T, a *testcluster.Agent, cl *client.Client) {
	st, err := cl.Sessions.Open(ctx)
	if err == nil {
		err = st.Send(&beaconpb.SessionRequest{Kind: &beaconpb.SessionRequest_Open{Open: &beaconpb.OpenSession{Name: "dur-stop"}}})
	}
	if err == nil {
		_, err = st.Recv()
	}
	if err != nil {
		t.Fatal(err)
	}
	stopped := make(chan error, 1)
	go func() { stopped <- a.Stop() }()
	for {
		ev, err := st.Recv()
		if err != nil {
			t.Fatalf("the session ended without a stopping event: %v", err)
		}
		if s := ev.GetStopping(); s != nil {
			if w := s.GetWait().AsDuration(); w <= 0 || w > time.Minute {
				t.Errorf("stopping with wait %v, want a few seconds", w)
			}
			break
		}
	}
	if err := <-stopped; err != nil {
		t.Errorf("agent stop: %v", err)
	}
}

// sessionTTLs: absent is 10s, 1.5s is rounded up to the lease's 2s, and
// etcd's lease has that TTL; a confirmation carries the keepalive's TTL.
func sessionTTLs(ctx context.Context, t *testing.T, a *testcluster.Agent, cl *client.Client) {
	for _, c := range []struct {
		ttl  *durationpb.Duration
		want time.Duration
	}{{nil, 10 * time.Second}, {durationpb.New(1500 * time.Millisecond), 2 * time.Second}, {durationpb.New(time.Hour), time.Hour}} {
		sctx, scancel := context.WithCancel(ctx)
		st, err := cl.Sessions.Open(sctx)
		if err == nil {
			err = st.Send(&beaconpb.SessionRequest{Kind: &beaconpb.SessionRequest_Open{Open: &beaconpb.OpenSession{Ttl: c.ttl, Name: "dur"}}})
		}
		var ev *beaconpb.SessionEvent
		if err == nil {
			ev, err = st.Recv()
		}
		if err != nil {
			scancel()
			t.Fatalf("open with ttl %v: %v", c.ttl, err)
		}
		opened := ev.GetOpened()
		if got := opened.GetTtl().AsDuration(); got != c.want {
			t.Errorf("ttl %v: opened with %v, want %v", c.ttl, got, c.want)
		}
		var lease int64
		if _, err := fmt.Sscanf(opened.GetLeaseId(), "%x", &lease); err != nil {
			t.Fatalf("lease id %q: %v", opened.GetLeaseId(), err)
		}
		ttl, err := a.Client().TimeToLive(ctx, clientv3.LeaseID(lease))
		if err != nil || time.Duration(ttl.GrantedTTL)*time.Second != c.want {
			t.Errorf("ttl %v: etcd granted %+v, %v; want %v", c.ttl, ttl, err, c.want)
		}
		err = st.Send(&beaconpb.SessionRequest{Kind: &beaconpb.SessionRequest_Confirm{Confirm: &beaconpb.ConfirmLease{Seq: 1}}})
		for err == nil {
			if ev, err = st.Recv(); err == nil && ev.GetConfirmed() != nil {
				if got := ev.GetConfirmed().GetTtl().AsDuration(); got <= 0 || got > c.want {
					t.Errorf("ttl %v: confirmed with ttl %v, want (0, %v]", c.ttl, got, c.want)
				}
				break
			}
		}
		if err != nil {
			t.Errorf("ttl %v: confirm: %v", c.ttl, err)
		}
		scancel()
	}
}

// waitTimeouts: with the lock held and the election led by another
// session, a timeout ends the wait while the call's own deadline is far;
// absent or zero, the wait lasts until the call's deadline.
func waitTimeouts(ctx context.Context, t *testing.T, cl *client.Client) {
	holder, err := cl.NewSession(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close()
	lc, ec := beaconpb.NewLockClient(cl.Conn()), beaconpb.NewElectionClient(cl.Conn())
	if _, err := lc.Acquire(ctx, &beaconpb.LockAcquireRequest{Name: "dur-held", SessionId: holder.ID}); err != nil {
		t.Fatal(err)
	}
	if _, err := ec.Campaign(ctx, &beaconpb.ElectionCampaignRequest{Name: "dur-led", SessionId: holder.ID}); err != nil {
		t.Fatal(err)
	}
	// Each call waits in a session of its own: a wait the call's deadline
	// ended may still be winding down in the agent when the next begins.
	waiter := func() string {
		t.Helper()
		s, err := cl.NewSession(ctx)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s.ID
	}
	calls := map[string]func(context.Context, *durationpb.Duration) error{
		"lock": func(ctx context.Context, d *durationpb.Duration) error {
			_, err := lc.Acquire(ctx, &beaconpb.LockAcquireRequest{Name: "dur-held", SessionId: waiter(), Timeout: d})
			return err
		},
		"election": func(ctx context.Context, d *durationpb.Duration) error {
			_, err := ec.Campaign(ctx, &beaconpb.ElectionCampaignRequest{Name: "dur-led", SessionId: waiter(), Timeout: d})
			return err
		},
	}
	for what, call := range calls {
		// The agent's timeout: DeadlineExceeded with the call's own
		// deadline (a minute) still ahead.
		cctx, ccancel := context.WithTimeout(ctx, time.Minute)
		err := call(cctx, durationpb.New(200*time.Millisecond))
		if status.Code(err) != codes.DeadlineExceeded || cctx.Err() != nil {
			t.Errorf("%s timeout 200ms: %v (call's context: %v), want the agent's DeadlineExceeded", what, err, cctx.Err())
		}
		ccancel()
		// Absent and zero: no timeout of the agent's; the call's deadline
		// ends the wait.
		for _, d := range []*durationpb.Duration{nil, {}} {
			cctx, ccancel := context.WithTimeout(ctx, 2*time.Second)
			err := call(cctx, d)
			if status.Code(err) != codes.DeadlineExceeded || !callEnded(cctx) {
				t.Errorf("%s timeout %v: %v before the call's deadline, want a wait until it", what, d, err)
			}
			ccancel()
		}
	}
}

// callEnded reports whether ctx's deadline has come, or nearly: gRPC's
// own timer for the deadline may end a call a moment before ctx's does.
func callEnded(ctx context.Context) bool {
	dl, _ := ctx.Deadline()
	return ctx.Err() != nil || time.Until(dl) < 250*time.Millisecond
}
