package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/beaconhq/beacon/api/beaconpb"
	"github.com/beaconhq/beacon/client"
	"github.com/beaconhq/beacon/healthcheck"
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

// checkDurations: an agent-owned registration keeps its check's
// definition in the data dir: absent durations are healthcheck's defaults,
// given ones are kept; and deregister_critical_after removes a critical
// instance.
func checkDurations(ctx context.Context, t *testing.T, a *testcluster.Agent, cl *client.Client) {
	for _, c := range []struct {
		id    string
		check *beaconpb.Check
		want  healthcheck.Definition
	}{
		{"tcp-defaults", &beaconpb.Check{Tcp: "127.0.0.1:1"},
			healthcheck.Definition{Interval: healthcheck.DefaultInterval, Timeout: healthcheck.DefaultTimeout}},
		{"tcp-given", &beaconpb.Check{Tcp: "127.0.0.1:1", Interval: durationpb.New(2 * time.Second), Timeout: durationpb.New(1500 * time.Millisecond),
			DeregisterCriticalAfter: durationpb.New(time.Hour)},
			healthcheck.Definition{Interval: 2 * time.Second, Timeout: 1500 * time.Millisecond, DeregisterCriticalAfter: time.Hour}},
		{"ttl-given", &beaconpb.Check{Ttl: durationpb.New(30 * time.Second)}, healthcheck.Definition{TTL: 30 * time.Second}},
	} {
		if _, err := cl.Registry.Register(ctx, &beaconpb.RegisterRequest{Instance: &beaconpb.Instance{Service: "dur", Id: c.id, Port: 80}, Check: c.check}); err != nil {
			t.Fatalf("%s: %v", c.id, err)
		}
		got, err := keptCheck(a, c.id)
		if err != nil {
			t.Fatalf("%s: %v", c.id, err)
		}
		if got.TTL != c.want.TTL || got.Interval != c.want.Interval || got.Timeout != c.want.Timeout || got.DeregisterCriticalAfter != c.want.DeregisterCriticalAfter {
			t.Errorf("%s: kept ttl %v interval %v timeout %v deregister %v, want %v %v %v %v", c.id, got.TTL, got.Interval, got.Timeout,
				got.DeregisterCriticalAfter, c.want.TTL, c.want.Interval, c.want.Timeout, c.want.DeregisterCriticalAfter)
		}
	}
	// Honoured, not only kept: a check that never passes, deregistered
	// after a second of being critical.
	if _, err := cl.Registry.Register(ctx, &beaconpb.RegisterRequest{Instance: &beaconpb.Instance{Service: "dur", Id: "gone", Port: 80},
		Check: &beaconpb.Check{Tcp: "127.0.0.1:1", Interval: durationpb.New(100 * time.Millisecond), DeregisterCriticalAfter: durationpb.New(time.Second)}}); err != nil {
		t.Fatal(err)
	}
	if err := testcluster.Eventually(30*time.Second, func() error {
		_, err := cl.Registry.Get(ctx, &beaconpb.GetRequest{Service: "dur", Id: "gone"})
		if status.Code(err) == codes.NotFound {
			return nil
		}
		return fmt.Errorf("still registered: %v", err)
	}); err != nil {
		t.Error(err)
	}
}

// keptCheck reads the check of the agent-owned instance id from the
// agent's journal of registrations (services.log in its data dir).
func keptCheck(a *testcluster.Agent, id string) (healthcheck.Definition, error) {
	var last *healthcheck.Definition
	f, err := os.Open(filepath.Join(a.DataDir, "services.log"))
	if err != nil {
		return healthcheck.Definition{}, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var rec struct {
			Put *struct {
				Instance struct {
					ID string `json:"id"`
				} `json:"instance"`
				Check healthcheck.Definition `json:"check"`
			} `json:"put"`
		}
		if json.Unmarshal(sc.Bytes(), &rec) == nil && rec.Put != nil && rec.Put.Instance.ID == id {
			last = &rec.Put.Check
		}
	}
	if last == nil {
		return healthcheck.Definition{}, errors.Join(sc.Err(), fmt.Errorf("%s is not in services.log", id))
	}
	return *last, nil
}

// queueDurations: a reservation's deadline is now + visibility (30s when
// absent); an Extend's likewise; a delay (absent: none) keeps a message
// delayed; a wait (absent: none) lasts as long as given; a dedup window
// (absent: 5m) ends.
func queueDurations(ctx context.Context, t *testing.T, cl *client.Client) {
	qc := beaconpb.NewQueueClient(cl.Conn())
	enqueue := func(q string, delay *durationpb.Duration) {
		t.Helper()
		if _, err := qc.Enqueue(ctx, &beaconpb.QueueEnqueueRequest{Queue: q, Payload: []byte("x"), Delay: delay}); err != nil {
			t.Fatal(err)
		}
	}
	near := func(what string, got time.Time, before, after time.Time, d time.Duration) {
		t.Helper()
		if got.Before(before.Add(d-time.Second)) || got.After(after.Add(d+time.Second)) {
			t.Errorf("%s: deadline %v, want %v after the call (%v … %v)", what, got, d, before, after)
		}
	}
	for _, c := range []struct {
		vis  *durationpb.Duration
		want time.Duration
	}{{nil, 30 * time.Second}, {durationpb.New(5 * time.Second), 5 * time.Second}} {
		enqueue("dur-vis", nil)
		before := time.Now()
		r, err := qc.Reserve(ctx, &beaconpb.QueueReserveRequest{Queue: "dur-vis", Visibility: c.vis})
		after := time.Now()
		if err != nil {
			t.Fatal(err)
		}
		near(fmt.Sprintf("reserve visibility %v", c.vis), r.Deadline.AsTime(), before, after, c.want)
		before = time.Now()
		e, err := qc.Extend(ctx, &beaconpb.QueueExtendRequest{Receipt: r.Receipt, Visibility: c.vis})
		after = time.Now()
		if err != nil {
			t.Fatal(err)
		}
		near(fmt.Sprintf("extend visibility %v", c.vis), e.Deadline.AsTime(), before, after, c.want)
		if _, err := qc.Ack(ctx, &beaconpb.QueueAckRequest{Receipt: r.Receipt}); err != nil {
			t.Fatal(err)
		}
	}

	// Delays: absent is ready at once, an hour is delayed; a nack's too.
	enqueue("dur-delay", nil)
	enqueue("dur-delay", durationpb.New(time.Hour))
	r, err := qc.Reserve(ctx, &beaconpb.QueueReserveRequest{Queue: "dur-delay"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := qc.Nack(ctx, &beaconpb.QueueNackRequest{Receipt: r.Receipt, Delay: durationpb.New(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if st, err := qc.Stats(ctx, &beaconpb.QueueStatsRequest{Queue: "dur-delay"}); err != nil || st.Ready != 0 || st.Delayed != 2 {
		t.Errorf("after an enqueue and a nack with an hour's delay: %v, %v; want 2 delayed, none ready", st, err)
	}

	// Wait: absent answers NOT_FOUND at once; 300ms answers NOT_FOUND
	// with the call's deadline (a minute) far ahead; a day is still
	// waiting when the call's deadline (2s) ends it.
	if _, err := qc.Reserve(ctx, &beaconpb.QueueReserveRequest{Queue: "dur-wait"}); status.Code(err) != codes.NotFound {
		t.Errorf("reserve without wait on an empty queue: %v, want NotFound", err)
	}
	for _, c := range []struct {
		wait, call time.Duration
		code       codes.Code
		callEnded  bool
	}{{300 * time.Millisecond, time.Minute, codes.NotFound, false}, {24 * time.Hour, 2 * time.Second, codes.DeadlineExceeded, true}} {
		cctx, ccancel := context.WithTimeout(ctx, c.call)
		_, err := qc.Reserve(cctx, &beaconpb.QueueReserveRequest{Queue: "dur-wait", Wait: durationpb.New(c.wait)})
		if status.Code(err) != c.code || callEnded(cctx) != c.callEnded {
			t.Errorf("reserve with wait %v in a call of %v: %v (call's context: %v), want %v", c.wait, c.call, err, cctx.Err(), c.code)
		}
		ccancel()
	}

	// Dedup window: one second ends, and the same dedup_id adds a message
	// again; absent (5m), it is a duplicate.
	dedup := func(id string, window *durationpb.Duration) bool {
		t.Helper()
		r, err := qc.Enqueue(ctx, &beaconpb.QueueEnqueueRequest{Queue: "dur-dedup", Payload: []byte("x"), DedupId: id, DedupWindow: window})
		if err != nil {
			t.Fatal(err)
		}
		return r.Duplicate
	}
	dedup("long", nil)
	dedup("short", durationpb.New(time.Second))
	if err := testcluster.Eventually(30*time.Second, func() error {
		if !dedup("short", durationpb.New(time.Second)) {
			return nil
		}
		return errors.New("a dedup window of 1s still holds")
	}); err != nil {
		t.Error(err)
	}
	if !dedup("long", nil) {
		t.Error("the default window (5m) ended within seconds")
	}
}
