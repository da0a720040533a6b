package e2e

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
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

// A small backend quota, so that a flood fills it in seconds: 32 MiB, of
// which data may use half.
const (
	floodQuota     = 32 << 20
	floodValueSize = 256 << 10
	floodMaxPuts   = 2 * floodQuota / floodValueSize // twice the quota: the flood always reaches it
)

// quotaPair starts a member with the small quota and a proxy, both with
// data-quota-percent percent (and client-quota-percent 90, or 100 with
// it), and returns them with a Config client on
// the proxy.
func quotaPair(t *testing.T, percent int) (member, proxy *testcluster.Agent, cfg beaconpb.ConfigClient) {
	t.Helper()
	pct, clientPct := fmt.Sprint(percent), fmt.Sprint(max(percent, 90))
	c := testcluster.New(t)
	member = c.Host("a")
	member.Start("--etcd-quota-backend-bytes", fmt.Sprint(floodQuota), "--data-quota-percent", pct, "--client-quota-percent", clientPct)
	member.WaitReady(readyWithin)
	proxy = c.Host("b")
	proxy.Start("--role", "proxy", "--join", member.ClientURL, "--data-quota-percent", pct, "--client-quota-percent", clientPct)
	proxy.WaitReady(readyWithin)
	return member, proxy, beaconpb.NewConfigClient(rawConn(t, proxy))
}

// flood puts distinct 256 KiB values through cfg until a put fails, and
// returns the puts that succeeded and the failure.
func flood(t *testing.T, cfg beaconpb.ConfigClient) (int, error) {
	t.Helper()
	value := []byte(strings.Repeat("x", floodValueSize))
	for i := range floodMaxPuts {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err := cfg.Put(ctx, &beaconpb.ConfigPutRequest{Key: fmt.Sprintf("flood/%04d", i), Value: value})
		cancel()
		if err != nil {
			return i, err
		}
	}
	t.Fatalf("%d puts of %d bytes all taken: the flood never reached a %d-byte quota", floodMaxPuts, floodValueSize, floodQuota)
	return 0, nil
}

// TestDataQuotaKeepsRoomForCoordination: a client flooding an agent with
// config values is refused, naming the limit, once etcd's backend holds
// half its quota; locks and sessions keep working on every agent, etcd
// raises no alarm, and room made by deletes and a compaction is data's
// again.
func TestDataQuotaKeepsRoomForCoordination(t *testing.T) {
	member, proxy, cfg := quotaPair(t, 50)
	n, err := flood(t, cfg)
	if status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "data-quota-percent 50") {
		t.Fatalf("after %d puts: %v, want ResourceExhausted naming data-quota-percent 50", n, err)
	}
	t.Logf("refused after %d puts of %d KiB: %v", n, floodValueSize>>10, err)
	// The limit is half of 32 MiB: the flood stopped near it, not at
	// etcd's own quota.
	if stored := n * floodValueSize; stored > floodQuota*3/4 {
		t.Fatalf("%d bytes taken before the refusal, past three quarters of the quota", stored)
	}

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	alarms, err := member.Client().AlarmList(ctx)
	if err != nil || len(alarms.Alarms) != 0 {
		t.Fatalf("etcd alarms: %v %v, want none", alarms, err)
	}
	// The member's own guard refuses data too: it reads its backend in
	// process (the proxy reads the member it is connected to, once a
	// second, and its own count stopped the flood).
	qc := beaconpb.NewQueueClient(rawConn(t, member))
	pushed := 0
	for ; pushed < 64; pushed++ {
		if _, err = qc.Enqueue(ctx, &beaconpb.QueueEnqueueRequest{Queue: "jobs", Payload: []byte(strings.Repeat("j", floodValueSize))}); err != nil {
			break
		}
	}
	if status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "data-quota-percent 50") {
		t.Fatalf("after %d messages of 256 KiB on the member: %v, want ResourceExhausted naming data-quota-percent 50", pushed, err)
	}
	// Coordination goes on: a session, a lock and an election on each
	// agent.
	for _, a := range []*testcluster.Agent{member, proxy} {
		for _, recipe := range []string{"lock", "elect"} {
			out, stderr, err := testcluster.RunCLI(t, recipe, "after-the-flood", "--agent", a.APIAddr, "--", "echo", recipe+" on "+a.Name)
			if err != nil || !strings.Contains(out, recipe+" on "+a.Name) {
				t.Fatalf("%s on %s after the flood: %q %q %v", recipe, a.Name, out, stderr, err)
			}
		}
	}

	// Room made: the flood's keys deleted (deletes are always taken) and
	// their history compacted.
	for i := range n {
		if _, err := cfg.Delete(ctx, &beaconpb.ConfigDeleteRequest{Key: fmt.Sprintf("flood/%04d", i)}); err != nil {
			t.Fatalf("delete %d: %v", i, err)
		}
	}
	cli := member.Client()
	rev, err := cli.Get(ctx, "compact-point")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Compact(ctx, rev.Header.Revision, clientv3.WithCompactPhysical()); err != nil {
		t.Fatal(err)
	}
	if err := testcluster.Eventually(20*time.Second, func() error {
		// etcd counts the pages a compaction freed at its next commit:
		// a write of the fleet's own (a small one, as sessions make).
		if _, err := cli.Put(ctx, "compact-point", time.Now().String()); err != nil {
			return err
		}
		_, err := cfg.Put(ctx, &beaconpb.ConfigPutRequest{Key: "after/compaction", Value: []byte(strings.Repeat("y", floodValueSize))})
		return err
	}); err != nil {
		t.Fatalf("a put after deletes and a compaction: %v", err)
	}
	if v, err := metric(proxy, `beacon_data_quota_refused_total{line="data"}`); err != nil || v < 1 {
		t.Fatalf("beacon_data_quota_refused_total on the proxy: %v %v, want ≥ 1", v, err)
	}
}

// TestWithoutDataQuotaAFloodStopsCoordination is what the guard is for,
// and shows that the flood above is strong enough: with both lines at 100
// the same flood runs into etcd's own quota, etcd raises its NOSPACE
// alarm, and a lock can no longer be taken on any agent.
func TestWithoutDataQuotaAFloodStopsCoordination(t *testing.T) {
	member, proxy, cfg := quotaPair(t, 100)
	n, err := flood(t, cfg)
	t.Logf("after %d puts of %d KiB: %v", n, floodValueSize>>10, err)
	if status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "database space exceeded") {
		t.Fatalf("after %d puts: %v, want ResourceExhausted: etcd's database space exceeded", n, err)
	}
	for _, a := range []*testcluster.Agent{member, proxy} {
		_, stderr, err := testcluster.RunCLI(t, "lock", "after-the-flood", "--agent", a.APIAddr, "--call-timeout", "5s", "--", "true")
		if err == nil || !strings.Contains(stderr, "database space exceeded") {
			t.Fatalf("lock on %s after etcd's quota was reached: %v %q, want refused: database space exceeded", a.Name, err, stderr)
		}
		t.Logf("lock on %s: %s", a.Name, strings.TrimSpace(stderr))
	}
}

// TestDataQuotaHoldsAgainstClientChurn: the writes a review found the
// first guard did not count, each against a fresh member (quota 32 MiB,
// data line 25 %, client line 50 %). A key gate's stored value is data;
// status flips of instances with meta that JSON escapes six-fold rewrite
// the instance each time; lock keys on ever new names pile up history.
// Each stops at its line, refused naming it, and etcd never raises its
// alarm: the last half stays the agents' own.
func TestDataQuotaHoldsAgainstClientChurn(t *testing.T) {
	const quota = 32 << 20
	for _, c := range []struct {
		name  string
		churn func(t *testing.T, ctx context.Context, a *testcluster.Agent, cl *client.Client)
	}{
		{"key gates", churnKeyGates},
		{"status flips", churnStatus},
		{"lock keys", churnLocks},
		{"parallel puts", churnParallelPuts},
	} {
		t.Run(c.name, func(t *testing.T) {
			a := testcluster.New(t).Host("a")
			a.Start("--etcd-quota-backend-bytes", fmt.Sprint(quota), "--data-quota-percent", "25", "--client-quota-percent", "50")
			a.WaitReady(readyWithin)
			cl, err := client.New(a.APIAddr)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { cl.Close() })
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			c.churn(t, ctx, a, cl)
			alarms, err := a.Client().AlarmList(ctx)
			if err != nil || len(alarms.Alarms) != 0 {
				t.Fatalf("etcd alarms %v %v, want none", alarms, err)
			}
			// What is left is the agents' own: etcd itself takes a write.
			if _, err := a.Client().Put(ctx, "/beacon/agents-own", "still room"); err != nil {
				t.Fatalf("a raw put past the client line: %v, want etcd to have room", err)
			}
		})
	}
}

// churnKeyGates sets key gates whose stored value is 512 KiB (base64 in
// JSON) until refused at the data line.
func churnKeyGates(t *testing.T, ctx context.Context, a *testcluster.Agent, cl *client.Client) {
	qc := beaconpb.NewQueueClient(cl.Conn())
	value := []byte(strings.Repeat("g", 512<<10))
	var err error
	gates := 0
	for ; gates < 64; gates++ {
		_, err = qc.Gate(ctx, &beaconpb.QueueGateRequest{Queue: fmt.Sprintf("gated-%d", gates%4),
			Condition: &beaconpb.QueueGateRequest_Key{Key: &beaconpb.QueueGateKey{Key: "gate/k", Value: value}}})
		if err != nil {
			break
		}
	}
	if status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "data-quota-percent 25") {
		t.Fatalf("after %d key gates of 512 KiB: %v, want ResourceExhausted naming data-quota-percent 25", gates, err)
	}
	t.Logf("refused after %d key gates", gates)
}

// churnStatus flips the TTL checks of 8 instances with 60 KiB of '<' in
// their meta (six-fold in JSON) between pass, warn and fail, with a new
// output each time: the agent's rewrites stop at the client line.
func churnStatus(t *testing.T, ctx context.Context, a *testcluster.Agent, cl *client.Client) {
	meta := map[string]string{}
	for i := range 15 {
		meta[fmt.Sprintf("m%d", i)] = strings.Repeat("<", 4000)
	}
	for i := range 8 {
		in := &beaconpb.Instance{Service: "churn", Id: fmt.Sprintf("churn-%d", i), Port: uint32(9000 + i), Meta: meta}
		if _, err := cl.Register(ctx, in, &beaconpb.Check{Ttl: durationpb.New(time.Minute)}); err != nil {
			t.Fatalf("register %d: %v", i, err)
		}
	}
	// One more, passing, whose client will go silent past the line.
	silent := &beaconpb.Instance{Service: "silent", Id: "silent-1", Port: 9100}
	if _, err := cl.Register(ctx, silent, &beaconpb.Check{Ttl: durationpb.New(2 * time.Second)}); err != nil {
		t.Fatal(err)
	}
	if err := cl.Heartbeat(ctx, "silent", "silent-1", "pass", "ok"); err != nil {
		t.Fatal(err)
	}
	// Flip until the backend is near the client line (16 MiB): 12 MiB in
	// use, or a refusal at the line itself.
	refused := `beacon_data_quota_refused_total{line="client"}`
	flips := 0
	err := testcluster.Eventually(60*time.Second, func() error {
		for range 16 {
			if err := cl.Heartbeat(ctx, "churn", fmt.Sprintf("churn-%d", flips%8), []string{"pass", "warn", "fail"}[flips%3], fmt.Sprint(flips)); err != nil {
				return err
			}
			flips++
		}
		inUse, _ := metric(a, "beacon_data_quota_in_use_bytes")
		if v, err := metric(a, refused); err != nil || v < 1 && inUse < 12<<20 {
			return fmt.Errorf("%s %v %v, %.1f MiB in use; want a refusal at the line, or 12 MiB", refused, v, err, inUse/(1<<20))
		}
		return nil
	})
	if err != nil {
		t.Fatalf("after %d status flips: %v", flips, err)
	}
	t.Logf("near the client line after %d flips", flips)
	// And they stay refused, anti-entropy's retries included: 8 clients
	// failing their checks with a new output each time (critical to
	// critical is the client's write too, not the agent's), up to 3,000
	// heartbeats or 5 s.
	var sent atomic.Int64
	hbErrs := make(chan error, 8)
	deadline := time.Now().Add(5 * time.Second)
	for w := range 8 {
		go func() {
			for time.Now().Before(deadline) {
				i := sent.Add(1)
				if i > 3000 {
					break
				}
				if err := cl.Heartbeat(ctx, "churn", fmt.Sprintf("churn-%d", w), []string{"fail", "fail", "pass"}[i%3], fmt.Sprint(flips+int(i))); err != nil {
					hbErrs <- err
					return
				}
			}
			hbErrs <- nil
		}()
	}
	for range 8 {
		if err := <-hbErrs; err != nil {
			t.Fatalf("heartbeat past the line: %v", err)
		}
	}
	inUse, _ := metric(a, "beacon_data_quota_in_use_bytes")
	t.Logf("%d heartbeats past the line; %.1f MiB in use", min(sent.Load(), 3000), inUse/(1<<20))
	// A check that fails past the line still takes its instance out of
	// the answers: going critical is the agent's own write.
	if err := testcluster.Eventually(15*time.Second, func() error {
		in, err := cl.Registry.Get(ctx, &beaconpb.GetRequest{Service: "silent", Id: "silent-1"})
		if err != nil || in.Status != "critical" {
			return fmt.Errorf("silent-1 past its TTL: %v %v, want critical", in.GetStatus(), err)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// churnLocks takes and releases locks on new 128-byte names, 8 at a
// time, until refused at the client line.
func churnLocks(t *testing.T, ctx context.Context, a *testcluster.Agent, cl *client.Client) {
	sess, err := cl.NewSession(ctx)
	if err != nil {
		t.Fatal(err)
	}
	lc := beaconpb.NewLockClient(cl.Conn())
	// Held from before the churn: their release and ack must pass the
	// line, like every delete.
	held, err := lc.Acquire(ctx, &beaconpb.LockAcquireRequest{Name: "held", SessionId: sess.ID})
	if err != nil {
		t.Fatal(err)
	}
	qc := beaconpb.NewQueueClient(cl.Conn())
	if _, err := qc.Enqueue(ctx, &beaconpb.QueueEnqueueRequest{Queue: "jobs", Payload: []byte("job")}); err != nil {
		t.Fatal(err)
	}
	job, err := qc.Reserve(ctx, &beaconpb.QueueReserveRequest{Queue: "jobs", SessionId: sess.ID})
	if err != nil {
		t.Fatal(err)
	}
	var next atomic.Int64
	errs := make(chan error, 8)
	for range 8 {
		go func() {
			for {
				i := next.Add(1)
				if i > 200000 {
					errs <- fmt.Errorf("200000 lock cycles taken")
					return
				}
				r, err := lc.TryAcquire(ctx, &beaconpb.LockAcquireRequest{Name: fmt.Sprintf("%0128d", i), SessionId: sess.ID})
				if err == nil {
					_, err = lc.Release(ctx, &beaconpb.LockReleaseRequest{Key: r.Key, Token: r.Token, SessionId: sess.ID})
				}
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	for range 8 {
		if err := <-errs; status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "client-quota-percent 50") {
			t.Errorf("a lock churner ended with %v, want ResourceExhausted naming client-quota-percent 50", err)
		}
	}
	t.Logf("refused after about %d lock cycles", next.Load())
	if _, err := lc.Release(ctx, &beaconpb.LockReleaseRequest{Key: held.Key, Token: held.Token, SessionId: sess.ID}); err != nil {
		t.Errorf("release past the client line: %v", err)
	}
	if _, err := qc.Ack(ctx, &beaconpb.QueueAckRequest{Receipt: job.Receipt, SessionId: sess.ID}); err != nil {
		t.Errorf("ack past the client line: %v", err)
	}
}

// churnParallelPuts puts 1 MB config values from 16 clients at once
// until refused: every write admitted between two readings of the
// backend counts, so the burst stops at the line, not past etcd's quota.
func churnParallelPuts(t *testing.T, ctx context.Context, a *testcluster.Agent, cl *client.Client) {
	cfg := cl.Config()
	value := []byte(strings.Repeat("p", 1_000_000))
	var next atomic.Int64
	errs := make(chan error, 16)
	for range 16 {
		go func() {
			for {
				i := next.Add(1)
				if i > 400 {
					errs <- fmt.Errorf("400 puts of 1 MB taken")
					return
				}
				if _, err := cfg.Put(ctx, &beaconpb.ConfigPutRequest{Key: fmt.Sprintf("burst/%03d", i), Value: value}); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	for range 16 {
		if err := <-errs; status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "data-quota-percent 25") {
			t.Errorf("a putter ended with %v, want ResourceExhausted naming data-quota-percent 25", err)
		}
	}
	t.Logf("refused after about %d puts of 1 MB", next.Load()-16)
}
