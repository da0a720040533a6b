package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/beaconhq/beacon/api/beaconpb"
	"github.com/beaconhq/beacon/internal/testcluster"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// A small backend quota, so that a flood fills it in seconds: 32 MiB, of
// which data may use half.
const (
	floodQuota     = 32 << 20
	floodValueSize = 256 << 10
	floodMaxPuts   = 2 * floodQuota / floodValueSize // twice the quota: the flood always reaches it
)

// quotaPair starts a member with the small quota and a proxy, both with
// data-quota-percent percent, and returns them with a Config client on
// the proxy.
func quotaPair(t *testing.T, percent int) (member, proxy *testcluster.Agent, cfg beaconpb.ConfigClient) {
	t.Helper()
	pct := fmt.Sprint(percent)
	c := testcluster.New(t)
	member = c.Host("a")
	member.Start("--etcd-quota-backend-bytes", fmt.Sprint(floodQuota), "--data-quota-percent", pct)
	member.WaitReady(readyWithin)
	proxy = c.Host("b")
	proxy.Start("--role", "proxy", "--join", member.ClientURL, "--data-quota-percent", pct)
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
	// The member's own guard refuses data too (it reads its backend in
	// process; the proxy reads the member it is connected to). The flood
	// stopped just short of the line by the proxy's count, so a message
	// as large as the flood's values is past it.
	qc := beaconpb.NewQueueClient(rawConn(t, member))
	if err := testcluster.Eventually(10*time.Second, func() error {
		_, err := qc.Enqueue(ctx, &beaconpb.QueueEnqueueRequest{Queue: "jobs", Payload: []byte(strings.Repeat("j", floodValueSize))})
		if status.Code(err) != codes.ResourceExhausted {
			u, _ := metric(member, "beacon_data_quota_in_use_bytes")
			l, _ := metric(member, "beacon_data_quota_limit_bytes")
			return fmt.Errorf("enqueue on the member: %v, want ResourceExhausted (its reading: %.0f of %.0f)", err, u, l)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	// Coordination goes on: a session and a lock on each agent.
	for _, a := range []*testcluster.Agent{member, proxy} {
		out, stderr, err := testcluster.RunCLI(t, "lock", "after-the-flood", "--agent", a.APIAddr, "--", "echo", "held on "+a.Name)
		if err != nil || !strings.Contains(out, "held on "+a.Name) {
			t.Fatalf("lock on %s after the flood: %q %q %v", a.Name, out, stderr, err)
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
	if v, err := metric(proxy, "beacon_data_quota_refused_total"); err != nil || v < 1 {
		t.Fatalf("beacon_data_quota_refused_total on the proxy: %v %v, want ≥ 1", v, err)
	}
}

// TestWithoutDataQuotaAFloodStopsCoordination is what the guard is for,
// and shows that the flood above is strong enough: with data-quota-percent
// 100 the same flood runs into etcd's own quota, etcd raises its NOSPACE
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
