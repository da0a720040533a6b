package dataquota

import (
	"context"
	"errors"
	"strings"
	"testing"

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

var (
	agentCtx  = context.Background()
	clientCtx = withClass(context.Background(), classClient)
	dataCtx   = withClass(context.Background(), classData)
)

func TestLinesByClass(t *testing.T) {
	g := newGuard(t, 50, 80)
	if err := g.admit(dataCtx, 1<<30, false); err != nil {
		t.Fatalf("before any reading: %v, want admitted", err)
	}
	// Quota 1000: data line 500, client line 800. In use 400, size 700.
	g.read(context.Background(), reading(400, 700, 1000, nil))
	if err := g.admit(dataCtx, 100, false); err != nil {
		t.Fatalf("data 400+100 of 500: %v", err)
	}
	err := g.admit(dataCtx, 1, false)
	if !errors.Is(err, ErrFull) || !strings.Contains(err.Error(), "data-quota-percent 50") {
		t.Fatalf("data past its line: %v, want ErrFull naming data-quota-percent 50", err)
	}
	// The client line judges the size (700) plus what was admitted (100).
	if err := g.admit(clientCtx, 0, false); err != nil {
		t.Fatalf("client 800 of 800: %v", err)
	}
	if err := g.admit(clientCtx, 1, false); !errors.Is(err, ErrFull) || !strings.Contains(err.Error(), "client-quota-percent 80") {
		t.Fatalf("client past its line: %v, want ErrFull naming client-quota-percent 80", err)
	}
	// Deletes and the agent's own writes pass both lines, and count.
	if err := g.admit(clientCtx, 50, true); err != nil {
		t.Fatalf("a client's delete: %v", err)
	}
	if err := g.admit(agentCtx, 50, false); err != nil {
		t.Fatalf("the agent's own write: %v", err)
	}
	if got := g.admitted.Load(); got != 200 {
		t.Fatalf("admitted %d, want 200", got)
	}
	if g.refusedData.Load() != 1 || g.refusedClient.Load() != 1 {
		t.Fatalf("refused data %d, client %d; want 1, 1", g.refusedData.Load(), g.refusedClient.Load())
	}
	// A new reading replaces what was counted since the last one. Data
	// is a client's write too: the client line, by the backend's size,
	// holds it as well.
	g.read(context.Background(), reading(100, 700, 1000, nil))
	if err := g.admit(dataCtx, 300, false); !errors.Is(err, ErrFull) || !strings.Contains(err.Error(), "client-quota-percent") {
		t.Fatalf("data under its line in use, past the client line by size: %v", err)
	}
	g.read(context.Background(), reading(100, 300, 1000, nil))
	if err := g.admit(dataCtx, 300, false); err != nil {
		t.Fatalf("after room was made: %v", err)
	}
}

func TestAFailedReadingKeepsTheLast(t *testing.T) {
	g := newGuard(t, 50, 90)
	g.read(context.Background(), reading(500, 500, 1000, nil))
	g.read(context.Background(), reading(0, 0, 0, errors.New("no leader")))
	if err := g.admit(dataCtx, 1, false); !errors.Is(err, ErrFull) {
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
	// Quota 100 KiB: data line 50 KiB, client line 80 KiB.
	g.read(ctx, reading(0, 0, 100<<10, nil))
	value := strings.Repeat("v", 10<<10)
	for i := range 4 {
		if _, err := cli.Put(withClass(ctx, classData), "data/"+string(rune('a'+i)), value); err != nil {
			t.Fatalf("put %d: %v", i, err)
		}
	}
	// 4 × (10 KiB + key + overhead) admitted; a fifth passes 50 KiB.
	_, err := cli.Put(withClass(ctx, classData), "data/e", value)
	if status.Code(err) != codes.ResourceExhausted && !errors.Is(err, ErrFull) {
		t.Fatalf("fifth put: %v, want ErrFull", err)
	}
	if r, err := raw.Get(ctx, "data/e"); err != nil || len(r.Kvs) != 0 {
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
	g.read(ctx, reading(99<<10, 99<<10, 100<<10, nil))
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
	g.read(ctx, reading(99<<10, 99<<10, 100<<10, nil))
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
