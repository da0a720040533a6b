package dataquota

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/beaconhq/beacon/api/beaconpb"
	"github.com/beaconhq/beacon/internal/etcdtest"
	"go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
)

// reading is a Reader answering the given sizes (or err).
func reading(inUse, size, quota int64, err error) Reader {
	return func(context.Context) (*etcdserverpb.StatusResponse, error) {
		if err != nil {
			return nil, err
		}
		return &etcdserverpb.StatusResponse{DbSizeInUse: inUse, DbSize: size, DbSizeQuota: quota}, nil
	}
}

func newGuard(t *testing.T, data, client int) *Guard {
	t.Helper()
	g, err := New(data, WithClientPercent(client))
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// admit is g.admit's error.
func admit(g *Guard, ctx context.Context, n int64, allow bool) error {
	_, err := g.admit(ctx, n, allow)
	return err
}

// read takes a reading of r.
func read(g *Guard, r Reader) { g.reading(context.Background(), r, time.Second) }

func pendingOf(g *Guard) int64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.pendingLocked()
}

const mib = 1 << 20

// k scales the sizes of the arithmetic tests: a quota of 1000k is about
// 98 MiB, well above the Reserve kept below it.
const k = 100 << 10

var (
	agentCtx  = context.Background()
	clientCtx = withClass(context.Background(), classClient)
	dataCtx   = withClass(context.Background(), classData)
)

// Quota 1000k: data line 500k, client line 800k.
func TestLinesByClass(t *testing.T) {
	if err := admit(newGuard(t, 50, 80), dataCtx, 1<<40, false); err != nil {
		t.Fatalf("before any reading: %v, want admitted", err)
	}
	g := newGuard(t, 50, 80)
	read(g, reading(400*k, 400*k, 1000*k, nil))
	if err := admit(g, dataCtx, 100*k, false); err != nil {
		t.Fatalf("data 400+100 of 500: %v", err)
	}
	// A reading that does not show it yet: it stays counted.
	read(g, reading(400*k, 400*k, 1000*k, nil))
	err := admit(g, dataCtx, 1, false)
	if !errors.Is(err, ErrFull) || !strings.Contains(err.Error(), "data-quota-percent 50") {
		t.Fatalf("data past its line: %v, want ErrFull naming data-quota-percent 50", err)
	}
	// Coordination goes on past the data line, up to the client line.
	if err := admit(g, clientCtx, 300*k, false); err != nil {
		t.Fatalf("client 400+100+300 of 800: %v", err)
	}
	read(g, reading(400*k, 400*k, 1000*k, nil))
	if err := admit(g, clientCtx, 1, false); !errors.Is(err, ErrFull) || !strings.Contains(err.Error(), "client-quota-percent 80") {
		t.Fatalf("client past its line: %v, want ErrFull naming client-quota-percent 80", err)
	}
	// Deletes and the agent's own writes pass both lines, and count.
	if err := admit(g, clientCtx, 50*k, true); err != nil {
		t.Fatalf("a client's delete: %v", err)
	}
	if err := admit(g, agentCtx, 50*k, false); err != nil {
		t.Fatalf("the agent's own write: %v", err)
	}
	if got := pendingOf(g); got != 500*k {
		t.Fatalf("pending %d, want %d", got, 500*k)
	}
	if g.refusedData.Load() != 1 || g.refusedClient.Load() != 1 {
		t.Fatalf("refused data %d, client %d; want 1, 1", g.refusedData.Load(), g.refusedClient.Load())
	}
	// Settled: after settleReadings more readings, only the reading counts.
	for range settleReadings + 1 {
		read(g, reading(100*k, 700*k, 1000*k, nil))
	}
	if got := pendingOf(g); got != 0 {
		t.Fatalf("pending %d after the settling readings, want 0", got)
	}
	// A large size further from the quota does not hold writes: its free
	// pages take them.
	if err := admit(g, dataCtx, 100*k, false); err != nil {
		t.Fatalf("after room was made: %v", err)
	}
	// A backend whose size (its high-water mark) nears etcd's quota holds
	// every client write, however little is in use: etcd judges the size.
	read(g, reading(100*k, 1000*k-Reserve/2, 1000*k, nil))
	if err := admit(g, dataCtx, 1, false); !errors.Is(err, ErrFull) || !strings.Contains(err.Error(), "client-quota-percent") {
		t.Fatalf("a backend whose size nears the quota: %v, want ErrFull at the client line", err)
	}
}

// TestShareBetweenReadings: between two readings an agent admits a
// quarter of the room its last reading left below the line (other agents
// write too), and a write past it waits for the next reading.
func TestShareBetweenReadings(t *testing.T) {
	g := newGuard(t, 50, 80)
	read(g, reading(0, 0, 1000*k, nil)) // data line 500k, a quarter 125k
	if err := admit(g, dataCtx, 100*k, false); err != nil {
		t.Fatalf("a first write: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- admit(g, dataCtx, 50*k, false) }()
	select {
	case err := <-done:
		t.Fatalf("a write past the share did not wait: %v", err)
	case <-time.After(50 * time.Millisecond):
	}
	read(g, reading(100*k, 100*k, 1000*k, nil))
	if err := <-done; err != nil {
		t.Fatalf("after the next reading: %v", err)
	}
	// Room 500k - (100k + 100k settling) = 300k: a quarter is 75k, and
	// 50k + 100k is past it. Waiting, the call's context ends first.
	ctx, cancel := context.WithTimeout(dataCtx, 50*time.Millisecond)
	defer cancel()
	if err := admit(g, ctx, 100*k, false); !errors.Is(err, ErrFull) || !strings.Contains(err.Error(), "retry in a moment") {
		t.Fatalf("past the share: %v, want ErrFull saying to retry", err)
	}
	// A first write after a reading is admitted whatever its size, if it
	// fits below the line.
	read(g, reading(100*k, 100*k, 1000*k, nil))
	if err := admit(g, dataCtx, 200*k, false); err != nil {
		t.Fatalf("a first write that fits: %v", err)
	}
}

func TestAFailedReadingKeepsTheLast(t *testing.T) {
	g := newGuard(t, 50, 90)
	read(g, reading(500*k, 500*k, 1000*k, nil))
	read(g, reading(0, 0, 0, errors.New("no leader")))
	if err := admit(g, dataCtx, 1, false); !errors.Is(err, ErrFull) {
		t.Fatalf("after a failed reading: %v, want the last reading to stand", err)
	}
}

func TestPercentsChecked(t *testing.T) {
	for _, c := range []struct {
		data, client int
		want         string
	}{{0, 90, "data-quota-percent"}, {101, 101, "data-quota-percent"}, {75, 0, "client-quota-percent"}, {80, 70, "below data-quota-percent"}} {
		if _, err := New(c.data, WithClientPercent(c.client)); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("New(%d, %d): %v, want an error naming %s", c.data, c.client, err, c.want)
		}
	}
}

// backendOf reads e's backend as a member agent does, with quota as its
// quota.
func backendOf(e *embed.Etcd, quota int64) Reader {
	return func(context.Context) (*etcdserverpb.StatusResponse, error) {
		be := e.Server.Backend()
		return &etcdserverpb.StatusResponse{DbSizeInUse: be.SizeInUse(), DbSize: be.Size(), DbSizeQuota: quota}, nil
	}
}

// TestGuardedClientStopsAtTheLine writes 1 MiB values through a real
// etcd, read as a member agent reads its own, until refused: the backend
// then holds no more than the data line.
func TestGuardedClientStopsAtTheLine(t *testing.T) {
	raw, e := etcdtest.New(t)
	g := newGuard(t, 50, 80)
	cli := g.Client(raw)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const quota = 40 * mib // data line 20 MiB
	go g.Run(ctx, backendOf(e, quota), MemberInterval)
	value := strings.Repeat("v", mib)
	var err error
	puts := 0
	for ; puts < 40; puts++ {
		if _, err = cli.Put(withClass(ctx, classData), fmt.Sprintf("data/%02d", puts), value); err != nil {
			break
		}
	}
	if !errors.Is(err, ErrFull) || !strings.Contains(err.Error(), "data-quota-percent 50") {
		t.Fatalf("after %d puts of 1 MiB: %v, want ErrFull at the data line", puts, err)
	}
	if r, gerr := raw.Get(ctx, fmt.Sprintf("data/%02d", puts)); gerr != nil || len(r.Kvs) != 0 {
		t.Fatalf("a refused put reached etcd: %v %v", r, gerr)
	}
	if used := e.Server.Backend().SizeInUse(); used > 20*mib {
		t.Fatalf("%d bytes in use after the refusal, past the 20 MiB line", used)
	}
	// Deletes pass, and so does the agent's own write.
	if _, err := cli.Delete(withClass(ctx, classData), "data/00"); err != nil {
		t.Fatalf("delete at the line: %v", err)
	}
	if _, err := cli.Put(ctx, "nodes/me", "agent"); err != nil {
		t.Fatalf("the agent's own put at the line: %v", err)
	}
	t.Logf("refused after %d puts of 1 MiB: %v", puts, err)
}

// TestGuardedClientTakesBack: a transaction is counted by its larger
// branch and the branch not taken is taken back; past the client line a
// client's put is refused and a transaction of deletes passes.
func TestGuardedClientTakesBack(t *testing.T) {
	raw, _ := etcdtest.New(t)
	g := newGuard(t, 50, 80)
	cli := g.Client(raw)
	ctx := context.Background()
	read(g, reading(0, 0, 40*mib, nil))
	before := pendingOf(g)
	resp, err := cli.Txn(withClass(ctx, classClient)).If(clientv3.Compare(clientv3.Version("none"), ">", 0)).
		Then(clientv3.OpPut("lock/x", strings.Repeat("v", 1000))).Commit()
	if err != nil || resp.Succeeded {
		t.Fatalf("txn: %v %v", resp, err)
	}
	if got := pendingOf(g); got != before {
		t.Fatalf("pending %d after a txn that took its empty branch, want %d", got, before)
	}
	if _, err := cli.Put(withClass(ctx, classClient), "lock/y", "held"); err != nil {
		t.Fatalf("a client's small write under the client line: %v", err)
	}
	read(g, reading(39*mib, 39*mib, 40*mib, nil))
	if _, err := cli.Txn(withClass(ctx, classClient)).Then(clientv3.OpDelete("lock/y")).Commit(); err != nil {
		t.Fatalf("a txn of deletes when full: %v", err)
	}
	if _, err := cli.Put(withClass(ctx, classClient), "lock/z", "held"); !errors.Is(err, ErrFull) {
		t.Fatalf("a client's put past the client line: %v, want ErrFull", err)
	}
}

// TestAnAckPassesWhenFull: an ack (marked Freeing) deletes its message
// and, in a nested transaction, may open its queue's gate; it passes both
// lines like any delete. The same write unmarked is a put like another.
func TestAnAckPassesWhenFull(t *testing.T) {
	raw, _ := etcdtest.New(t)
	g := newGuard(t, 50, 80)
	cli := g.Client(raw)
	ctx := withClass(context.Background(), classClient)
	read(g, reading(39*mib, 39*mib, 40*mib, nil))
	opens := clientv3.OpTxn([]clientv3.Cmp{clientv3.Compare(clientv3.Value("q/gate"), "=", "closed")},
		[]clientv3.Op{clientv3.OpPut("q/gate", "open")}, nil)
	if _, err := cli.Txn(Freeing(ctx)).Then(clientv3.OpDelete("q/msg/1"), opens).Commit(); err != nil {
		t.Fatalf("an ack when full: %v", err)
	}
	if _, err := cli.Txn(ctx).Then(clientv3.OpDelete("q/msg/1"), opens).Commit(); !errors.Is(err, ErrFull) {
		t.Fatalf("a nested put, not marked Freeing, when full: %v, want ErrFull", err)
	}
	if _, err := cli.Txn(ctx).Then(clientv3.OpDelete("q/msg/1"), clientv3.OpPut("q/msg/2", "x")).Commit(); !errors.Is(err, ErrFull) {
		t.Fatalf("a delete beside a put when full: %v, want ErrFull", err)
	}
}

func TestClassOfCall(t *testing.T) {
	for _, c := range []struct {
		method string
		req    any
		want   class
	}{
		{beaconpb.Config_Put_FullMethodName, &beaconpb.ConfigPutRequest{}, classData},
		{beaconpb.Queue_Gate_FullMethodName, &beaconpb.QueueGateRequest{}, classData},
		{beaconpb.Lock_Acquire_FullMethodName, &beaconpb.LockAcquireRequest{}, classClient},
		{beaconpb.Registry_Register_FullMethodName, &beaconpb.RegisterRequest{}, classClient},
		{beaconpb.Election_Campaign_FullMethodName, &beaconpb.ElectionCampaignRequest{Proposal: "10.0.0.1:8080"}, classClient},
		{beaconpb.Election_Campaign_FullMethodName, &beaconpb.ElectionCampaignRequest{Proposal: strings.Repeat("x", 2048)}, classData},
		{beaconpb.Election_Proclaim_FullMethodName, &beaconpb.ElectionProclaimRequest{Proposal: strings.Repeat("x", 2048)}, classData},
		{beaconpb.Session_Open_FullMethodName, nil, classClient},
	} {
		if got := classOfCall(c.method, c.req); got != c.want {
			t.Errorf("%s %v: class %d, want %d", c.method, c.req, got, c.want)
		}
	}
}

// TestUnadmitUnderALaterReading: what a write takes back after a new
// reading started the count again is not taken from the new count (it
// would open room the reading never saw).
func TestUnadmitUnderALaterReading(t *testing.T) {
	g := newGuard(t, 50, 80)
	read(g, reading(0, 0, 100*mib, nil))
	gen, err := g.admit(clientCtx, 10*mib, false)
	if err != nil {
		t.Fatal(err)
	}
	read(g, reading(10*mib, 10*mib, 100*mib, nil))
	g.unadmit(4*mib, gen) // still settling: taken back
	if got := pendingOf(g); got != 6*mib {
		t.Fatalf("pending %d, want %d", got, 6*mib)
	}
	for range settleReadings {
		read(g, reading(10*mib, 10*mib, 100*mib, nil))
	}
	g.unadmit(6*mib, gen) // settled: nothing to take back
	if got := pendingOf(g); got != 0 {
		t.Fatalf("pending %d after a settled take-back, want 0", got)
	}
}

// TestReserveBelowTheQuota: whatever the percents, the lines leave
// Reserve below a small quota.
func TestReserveBelowTheQuota(t *testing.T) {
	g := newGuard(t, 90, 99)
	read(g, reading(0, 0, 32*mib, nil))
	if g.ClientLimit() != 24*mib || g.Limit() != 20*mib {
		t.Fatalf("lines %d, %d on a 32 MiB quota; want %d, %d", g.Limit(), g.ClientLimit(), 20*mib, 24*mib)
	}
	read(g, reading(0, 0, 2<<30, nil))
	if g.ClientLimit() != (2<<30)*99/100 || g.Limit() != (2<<30)*90/100 {
		t.Fatalf("lines %d, %d on 2 GiB; want the percents", g.Limit(), g.ClientLimit())
	}
}
