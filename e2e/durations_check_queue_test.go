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
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
)

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
