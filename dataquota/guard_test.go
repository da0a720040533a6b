package dataquota

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/beaconhq/beacon/api/beaconpb"
	"github.com/beaconhq/beacon/internal/etcdtest"
	"go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
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
func read(g *Guard, r Reader) { g.read(context.Background(), r, time.Second) }

const mib = 1 << 20

// k scales the sizes of the arithmetic tests: a quota of 1000k is about
// 98 MiB, well above the Reserve kept below it.
const k = 100 << 10

var (
	agentCtx  = context.Background()
	clientCtx = withClass(context.Background(), classClient)
	dataCtx   = withClass(context.Background(), classData)
)

func TestLinesByClass(t *testing.T) {
	g := newGuard(t, 50, 80)
	if err := admit(g, dataCtx, 1<<40, false); err != nil {
		t.Fatalf("before any reading: %v, want admitted", err)
	}
	// Quota 1000k: data line 500k, client line 800k. In use 400k.
	read(g, reading(400*k, 400*k, 1000*k, nil))
	if err := admit(g, dataCtx, 100*k, false); err != nil {
		t.Fatalf("data 400+100 of 500: %v", err)
	}
	err := admit(g, dataCtx, 1, false)
	if !errors.Is(err, ErrFull) || !strings.Contains(err.Error(), "data-quota-percent 50") {
		t.Fatalf("data past its line: %v, want ErrFull naming data-quota-percent 50", err)
	}
	// The client line judges the bytes in use (400) plus what was
	// admitted (100).
	if err := admit(g, clientCtx, 300*k, false); err != nil {
		t.Fatalf("client 800 of 800: %v", err)
	}
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
	if got := g.admitted.Load(); got != 500*k {
		t.Fatalf("admitted %d, want %d", got, 500*k)
	}
	if g.refusedData.Load() != 1 || g.refusedClient.Load() != 1 {
		t.Fatalf("refused data %d, client %d; want 1, 1", g.refusedData.Load(), g.refusedClient.Load())
	}
	// A new reading replaces what was counted since the last one. A
	// backend whose size (its high-water mark) nears etcd's quota holds
	// every client write, however little is in use: etcd judges the size.
	read(g, reading(100*k, 1000*k-Reserve/2, 1000*k, nil))
	if err := admit(g, dataCtx, 1, false); !errors.Is(err, ErrFull) || !strings.Contains(err.Error(), "client-quota-percent") {
		t.Fatalf("a backend whose size nears the quota: %v, want ErrFull at the client line", err)
	}
	// A large size further from the quota does not: its free pages take
	// the writes.
	read(g, reading(100*k, 700*k, 1000*k, nil))
	if err := admit(g, dataCtx, 100*k, false); err != nil {
		t.Fatalf("after room was made: %v", err)
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

// TestGuardedClient writes through a real etcd: puts and transactions
// are judged at their context's line and counted by what they write, a
// failed or unused branch is taken back, deletes always pass.
func TestGuardedClient(t *testing.T) {
	raw, _ := etcdtest.New(t)
	g := newGuard(t, 50, 80)
	cli := g.Client(raw)
	ctx := context.Background()
	// Quota 40 MiB: data line 20 MiB, client line 32 MiB.
	read(g, reading(0, 0, 40*mib, nil))
	value := strings.Repeat("v", mib)
	for i := range 9 {
		if _, err := cli.Put(withClass(ctx, classData), "data/"+string(rune('a'+i)), value); err != nil {
			t.Fatalf("put %d: %v", i, err)
		}
	}
	// 9 × (2 × 1 MiB + key + overhead) admitted; a tenth passes 20 MiB.
	_, err := cli.Put(withClass(ctx, classData), "data/j", value)
	if status.Code(err) != codes.ResourceExhausted && !errors.Is(err, ErrFull) {
		t.Fatalf("tenth put: %v, want ErrFull", err)
	}
	if r, err := raw.Get(ctx, "data/e"); err != nil || len(r.Kvs) != 1 {
		t.Fatalf("data/e: %v %v", r, err) // put by the loop
	}
	if r, err := raw.Get(ctx, "data/j"); err != nil || len(r.Kvs) != 0 {
		t.Fatalf("a refused put reached etcd: %v %v", r, err)
	}
	// A transaction whose compare fails writes its else branch (nothing):
	// its then branch is taken back.
	before := g.admitted.Load()
	resp, err := cli.Txn(withClass(ctx, classClient)).If(clientv3.Compare(clientv3.Version("none"), ">", 0)).
		Then(clientv3.OpPut("lock/x", value)).Commit()
	if err != nil || resp.Succeeded {
		t.Fatalf("txn: %v %v", resp, err)
	}
	if g.admitted.Load() != before {
		t.Fatalf("admitted %d after a txn that took its empty branch, want %d", g.admitted.Load(), before)
	}
	// The client line still has room for a client's write, not data.
	if _, err := cli.Put(withClass(ctx, classClient), "lock/y", "held"); err != nil {
		t.Fatalf("a client's small write under the client line: %v", err)
	}
	// Deletes always pass, even past both lines.
	read(g, reading(39*mib, 39*mib, 40*mib, nil))
	if _, err := cli.Delete(withClass(ctx, classData), "data/a"); err != nil {
		t.Fatalf("delete when full: %v", err)
	}
	if _, err := cli.Txn(withClass(ctx, classClient)).Then(clientv3.OpDelete("lock/y")).Commit(); err != nil {
		t.Fatalf("a txn of deletes when full: %v", err)
	}
	if _, err := cli.Put(withClass(ctx, classClient), "lock/z", "held"); !errors.Is(err, ErrFull) {
		t.Fatalf("a client's put past the client line: %v, want ErrFull", err)
	}
	if _, err := cli.Put(ctx, "nodes/me", "agent"); err != nil {
		t.Fatalf("the agent's own put past both lines: %v", err)
	}
}

// TestAnAckPassesWhenFull: an ack deletes its message and, in a nested
// transaction, may open its queue's gate; it passes both lines like any
// delete.
func TestAnAckPassesWhenFull(t *testing.T) {
	raw, _ := etcdtest.New(t)
	g := newGuard(t, 50, 80)
	cli := g.Client(raw)
	ctx := withClass(context.Background(), classClient)
	read(g, reading(39*mib, 39*mib, 40*mib, nil))
	opens := clientv3.OpTxn([]clientv3.Cmp{clientv3.Compare(clientv3.Value("q/gate"), "=", "closed")},
		[]clientv3.Op{clientv3.OpPut("q/gate", "open")}, nil)
	if _, err := cli.Txn(ctx).Then(clientv3.OpDelete("q/msg/1"), opens).Commit(); err != nil {
		t.Fatalf("an ack when full: %v", err)
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
	g.unadmit(10*mib, gen)
	if got := g.admitted.Load(); got != 0 {
		t.Fatalf("admitted %d after a stale take-back, want 0", got)
	}
}

// TestReserveBelowTheQuota: whatever the percents, the lines leave
// Reserve below a small quota.
func TestReserveBelowTheQuota(t *testing.T) {
	g := newGuard(t, 90, 99)
	read(g, reading(0, 0, 32*mib, nil))
	if g.ClientLimit() != 24*mib || g.Limit() != 24*mib {
		t.Fatalf("lines %d, %d on a 32 MiB quota; want both at %d", g.Limit(), g.ClientLimit(), 24*mib)
	}
	read(g, reading(0, 0, 2<<30, nil))
	if g.ClientLimit() != (2<<30)*99/100 || g.Limit() != (2<<30)*90/100 {
		t.Fatalf("lines %d, %d on 2 GiB; want the percents", g.Limit(), g.ClientLimit())
	}
}
