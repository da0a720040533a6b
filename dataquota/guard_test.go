package dataquota

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/beaconhq/beacon/api/beaconpb"
	"go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// reading is a Reader answering the given sizes (or err).
func reading(inUse, quota int64, err error) Reader {
	return func(context.Context) (*etcdserverpb.StatusResponse, error) {
		if err != nil {
			return nil, err
		}
		return &etcdserverpb.StatusResponse{DbSizeInUse: inUse, DbSizeQuota: quota}, nil
	}
}

func newGuard(t *testing.T, percent int) *Guard {
	t.Helper()
	g, err := New(percent)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func TestAdmitUpToTheShare(t *testing.T) {
	g := newGuard(t, 50)
	if err := g.Admit(1 << 30); err != nil {
		t.Fatalf("before any reading: %v, want admitted", err)
	}
	g.read(context.Background(), reading(40, 200, nil)) // limit 100
	if err := g.Admit(60); err != nil {
		t.Fatalf("40+60 of 100: %v", err)
	}
	// What was admitted since the reading counts: 40+60+1 > 100.
	err := g.Admit(1)
	if !errors.Is(err, ErrFull) {
		t.Fatalf("past the share: %v, want ErrFull", err)
	}
	if st := status.Convert(err); !strings.Contains(err.Error(), "data-quota-percent 50") {
		t.Fatalf("message %q does not name the limit (%v)", err, st.Code())
	}
	if err := g.Admit(0); err != nil {
		t.Fatalf("a delete when full: %v, want admitted", err)
	}
	// A new reading replaces what was counted since the last one.
	g.read(context.Background(), reading(10, 200, nil))
	if err := g.Admit(90); err != nil {
		t.Fatalf("after room was made: %v", err)
	}
	if g.refused.Load() != 1 {
		t.Fatalf("refused %d, want 1", g.refused.Load())
	}
}

func TestAFailedReadingKeepsTheLast(t *testing.T) {
	g := newGuard(t, 50)
	g.read(context.Background(), reading(100, 200, nil))
	g.read(context.Background(), reading(0, 0, errors.New("no leader")))
	if err := g.Admit(1); !errors.Is(err, ErrFull) {
		t.Fatalf("after a failed reading: %v, want the last reading to stand", err)
	}
}

func TestFullPercentLeavesOnlyEtcdsQuota(t *testing.T) {
	g := newGuard(t, 100)
	g.read(context.Background(), reading(200, 200, nil))
	if err := g.Admit(1 << 20); err != nil {
		t.Fatalf("percent 100: %v, want admitted", err)
	}
}

func TestPercentChecked(t *testing.T) {
	for _, p := range []int{0, -1, 101} {
		if _, err := New(p); err == nil || !strings.Contains(err.Error(), "data-quota-percent") {
			t.Errorf("New(%d): %v, want an error naming data-quota-percent", p, err)
		}
	}
}

func TestUnaryRefusesOnlyData(t *testing.T) {
	g := newGuard(t, 50)
	g.read(context.Background(), reading(100, 200, nil))
	called := 0
	h := func(context.Context, any) (any, error) { called++; return nil, nil }
	put := &beaconpb.LockFencedOp{Type: beaconpb.LockOpType_LOCK_OP_PUT, Key: "k", Value: []byte("v")}
	del := &beaconpb.LockFencedOp{Type: beaconpb.LockOpType_LOCK_OP_DELETE, Key: "k"}
	for _, c := range []struct {
		method string
		req    any
		want   codes.Code
	}{
		{beaconpb.Config_Put_FullMethodName, &beaconpb.ConfigPutRequest{Key: "k", Value: []byte("v")}, codes.ResourceExhausted},
		{beaconpb.Config_Delete_FullMethodName, &beaconpb.ConfigDeleteRequest{Key: "k"}, codes.OK},
		{beaconpb.Queue_Enqueue_FullMethodName, &beaconpb.QueueEnqueueRequest{Queue: "q", Payload: []byte("p")}, codes.ResourceExhausted},
		{beaconpb.Queue_Ack_FullMethodName, &beaconpb.QueueAckRequest{Receipt: "r"}, codes.OK},
		{beaconpb.Election_Campaign_FullMethodName, &beaconpb.ElectionCampaignRequest{Name: "e"}, codes.OK},
		{beaconpb.Election_Proclaim_FullMethodName, &beaconpb.ElectionProclaimRequest{Name: "e", Proposal: "v"}, codes.ResourceExhausted},
		{beaconpb.Lock_Fenced_FullMethodName, &beaconpb.LockFencedRequest{Ops: []*beaconpb.LockFencedOp{del}}, codes.OK},
		{beaconpb.Lock_Fenced_FullMethodName, &beaconpb.LockFencedRequest{Ops: []*beaconpb.LockFencedOp{del, put}}, codes.ResourceExhausted},
		{beaconpb.Lock_Acquire_FullMethodName, &beaconpb.LockAcquireRequest{Name: "l"}, codes.OK},
		{beaconpb.Registry_Register_FullMethodName, &beaconpb.RegisterRequest{Instance: &beaconpb.Instance{Service: "s", Id: "i"}}, codes.ResourceExhausted},
	} {
		_, err := g.Unary(context.Background(), c.req, &grpc.UnaryServerInfo{FullMethod: c.method}, h)
		if status.Code(err) != c.want {
			t.Errorf("%s: %v, want %v", c.method, err, c.want)
		}
	}
	if called != 5 {
		t.Fatalf("handler called %d times, want 5", called)
	}
}
