package lock

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/beaconhq/beacon/api/beaconpb"
	"github.com/beaconhq/beacon/session"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
)

func testService(t *testing.T) (*Service, *session.Manager) {
	cli := testEtcd(t)
	m := session.NewManager(cli)
	t.Cleanup(func() { m.CloseAll(0) })
	ns := "/svc-" + strings.ReplaceAll(t.Name(), "/", "-") + "/"
	return NewService(cli, m, ns, WithNode("n1")), m
}

func openSession(t *testing.T, m *session.Manager) *session.Session {
	t.Helper()
	// A short TTL: the session notices a revoked lease at its next
	// keepalive, a third of the TTL later.
	s, err := m.Open(context.Background(), "test", 3*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func wantCode(t *testing.T, what string, err error, code codes.Code, mention string) {
	t.Helper()
	st := status.Convert(err)
	if st.Code() != code || !strings.Contains(st.Message(), mention) {
		t.Errorf("%s: %v %q; want %v mentioning %q", what, st.Code(), st.Message(), code, mention)
	}
}

func TestServiceBadInput(t *testing.T) {
	s, m := testService(t)
	ctx := ctxT(t)
	sess := openSession(t, m)
	for _, tc := range []struct {
		req   *beaconpb.LockAcquireRequest
		field string
	}{
		{&beaconpb.LockAcquireRequest{SessionId: sess.ID}, "name"},
		{&beaconpb.LockAcquireRequest{Name: "a/b", SessionId: sess.ID}, "name"},
		{&beaconpb.LockAcquireRequest{Name: "a b", SessionId: sess.ID}, "name"},
		{&beaconpb.LockAcquireRequest{Name: strings.Repeat("x", 200), SessionId: sess.ID}, "name"},
		{&beaconpb.LockAcquireRequest{Name: "a"}, "session_id"},
		{&beaconpb.LockAcquireRequest{Name: "a", SessionId: sess.ID, Limit: -1}, "limit"},
		{&beaconpb.LockAcquireRequest{Name: "a", SessionId: sess.ID, Limit: MaxLimit + 1}, "limit"},
		{&beaconpb.LockAcquireRequest{Name: "a", SessionId: sess.ID, Timeout: durationpb.New(-time.Millisecond)}, "timeout"},
		{&beaconpb.LockAcquireRequest{Name: "a", SessionId: sess.ID, Timeout: durationpb.New(MaxTimeout + time.Millisecond)}, "timeout"},
	} {
		_, err := s.Acquire(ctx, tc.req)
		wantCode(t, "Acquire "+tc.field, err, codes.InvalidArgument, tc.field)
	}
	_, err := s.Acquire(ctx, &beaconpb.LockAcquireRequest{Name: "a", SessionId: "nope"})
	wantCode(t, "unknown session", err, codes.NotFound, "session_id")

	l, err := s.Acquire(ctx, &beaconpb.LockAcquireRequest{Name: "a", SessionId: sess.ID})
	if err != nil {
		t.Fatal(err)
	}
	put := func(key string, v []byte) []*beaconpb.LockFencedOp {
		return []*beaconpb.LockFencedOp{{Type: beaconpb.LockOpType_LOCK_OP_PUT, Key: key, Value: v}}
	}
	for _, tc := range []struct {
		req   *beaconpb.LockFencedRequest
		field string
	}{
		{&beaconpb.LockFencedRequest{Key: "/elsewhere/a/1", Token: l.Token, Ops: put("/k", nil)}, "key"},
		{&beaconpb.LockFencedRequest{Key: l.Key, Token: 0, Ops: put("/k", nil)}, "token"},
		{&beaconpb.LockFencedRequest{Key: l.Key, Token: l.Token}, "ops"},
		{&beaconpb.LockFencedRequest{Key: l.Key, Token: l.Token, Ops: put("", nil)}, "ops[0].key"},
		{&beaconpb.LockFencedRequest{Key: l.Key, Token: l.Token, Ops: put(s.namespace+"services/x", nil)}, "ops[0].key"},
		{&beaconpb.LockFencedRequest{Key: l.Key, Token: l.Token, Ops: put("/k", make([]byte, MaxValueSize+1))}, "ops[0].value"},
		{&beaconpb.LockFencedRequest{Key: l.Key, Token: l.Token, Ops: []*beaconpb.LockFencedOp{{Key: "/k"}}}, "ops[0].type"},
		// etcd answers a key written twice with an error beacon passed on
		// as Internal (review find).
		{&beaconpb.LockFencedRequest{Key: l.Key, Token: l.Token, Ops: append(put("/k", nil), &beaconpb.LockFencedOp{Type: beaconpb.LockOpType_LOCK_OP_DELETE, Key: "/k"})}, "ops[1].key"},
	} {
		_, err := s.Fenced(ctx, tc.req)
		wantCode(t, "Fenced "+tc.field, err, codes.InvalidArgument, tc.field)
	}
	_, err = s.Release(ctx, &beaconpb.LockReleaseRequest{Key: "x", Token: l.Token})
	wantCode(t, "Release key", err, codes.InvalidArgument, "key")
	// Config keys are the applications': fenced writes may go there.
	if _, err := s.Fenced(ctx, &beaconpb.LockFencedRequest{Key: l.Key, Token: l.Token, Ops: put(s.namespace+"config/x", []byte("1"))}); err != nil {
		t.Fatal(err)
	}
}

func TestServiceOneContentionPerSession(t *testing.T) {
	s, m := testService(t)
	ctx := ctxT(t)
	sess := openSession(t, m)
	req := &beaconpb.LockAcquireRequest{Name: "a", SessionId: sess.ID}
	l, err := s.Acquire(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.TryAcquire(ctx, req)
	wantCode(t, "second acquire", err, codes.AlreadyExists, "already holds")
	if _, err := s.Release(ctx, &beaconpb.LockReleaseRequest{Key: l.Key, Token: l.Token, SessionId: sess.ID}); err != nil {
		t.Fatal(err)
	}
	_, err = s.Release(ctx, &beaconpb.LockReleaseRequest{Key: l.Key, Token: l.Token, SessionId: sess.ID})
	wantCode(t, "second release", err, codes.FailedPrecondition, "no longer holds")
	l2, err := s.TryAcquire(ctx, req)
	if err != nil || !l2.Acquired || l2.Token <= l.Token {
		t.Fatalf("acquire after release: %v %v", l2, err)
	}
	other := openSession(t, m)
	r, err := s.TryAcquire(ctx, &beaconpb.LockAcquireRequest{Name: "a", SessionId: other.ID})
	if err != nil || r.Acquired || len(r.Holders) != 1 || r.Holders[0].SessionName != sess.Name || r.Holders[0].Node != "n1" {
		t.Fatalf("TryAcquire of a held lock: %v %v", r, err)
	}
	_, err = s.Acquire(ctx, &beaconpb.LockAcquireRequest{Name: "a", SessionId: other.ID, Timeout: durationpb.New(100 * time.Millisecond)})
	wantCode(t, "timeout", err, codes.DeadlineExceeded, "held by test on n1")
}

type watchStream struct {
	grpc.ServerStream
	ctx    context.Context
	events chan *beaconpb.LockEvent
}

func (w *watchStream) Context() context.Context { return w.ctx }
func (w *watchStream) Send(ev *beaconpb.LockEvent) error {
	w.events <- ev
	return nil
}

func watchGrant(ctx context.Context, s *Service, key string, token int64) (*watchStream, chan error) {
	ws := &watchStream{ctx: ctx, events: make(chan *beaconpb.LockEvent, 4)}
	done := make(chan error, 1)
	go func() { done <- s.Watch(&beaconpb.LockWatchRequest{Key: key, Token: token}, ws) }()
	return ws, done
}

// eventWait bounds each wait on a watch, so that a missing event fails the
// test in seconds instead of hanging it until go test's timeout.
const eventWait = 20 * time.Second

func nextEvent(t *testing.T, ws *watchStream) *beaconpb.LockEvent {
	t.Helper()
	select {
	case ev := <-ws.events:
		return ev
	case <-time.After(eventWait):
		t.Fatalf("no lock event within %v", eventWait)
		return nil
	}
}

func watchEnd(t *testing.T, done chan error) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(eventWait):
		t.Fatalf("Watch did not return within %v", eventWait)
		return nil
	}
}

// When etcd ends a session's lease the session lives on with a new one,
// but its locks are gone: the holder is told, its token is refused, and it
// can contend again.
func TestServiceLeaseChangeLosesLock(t *testing.T) {
	s, m := testService(t)
	ctx := ctxT(t)
	sess := openSession(t, m)
	l, err := s.Acquire(ctx, &beaconpb.LockAcquireRequest{Name: "a", SessionId: sess.ID})
	if err != nil {
		t.Fatal(err)
	}
	ws, done := watchGrant(ctx, s, l.Key, l.Token)
	if ev := nextEvent(t, ws); ev.State != beaconpb.LockState_LOCK_STATE_HELD {
		t.Fatalf("first event %v", ev)
	}
	old := sess.Lease()
	if _, err := s.cli.Revoke(ctx, old); err != nil {
		t.Fatal(err)
	}
	if ev := nextEvent(t, ws); ev.State != beaconpb.LockState_LOCK_STATE_LOST {
		t.Fatalf("event after the lease ended: %v", ev)
	}
	if err := watchEnd(t, done); err != nil {
		t.Fatal(err)
	}
	_, err = s.Fenced(ctx, &beaconpb.LockFencedRequest{Key: l.Key, Token: l.Token,
		Ops: []*beaconpb.LockFencedOp{{Type: beaconpb.LockOpType_LOCK_OP_PUT, Key: "/svc-data", Value: []byte("x")}}})
	wantCode(t, "fenced write after loss", err, codes.FailedPrecondition, "stale")
	deadline := time.Now().Add(10 * time.Second)
	for sess.Lease() == old {
		if time.Now().After(deadline) {
			t.Fatal("the session had no new lease 10s after etcd ended its old one")
		}
		time.Sleep(10 * time.Millisecond)
	}
	l2, err := s.Acquire(ctx, &beaconpb.LockAcquireRequest{Name: "a", SessionId: sess.ID})
	if err != nil || l2.Key == l.Key {
		t.Fatalf("acquire under the new lease: %v %v", l2, err)
	}

	// A release is reported as such.
	ws, done = watchGrant(ctx, s, l2.Key, l2.Token)
	if ev := nextEvent(t, ws); ev.State != beaconpb.LockState_LOCK_STATE_HELD {
		t.Fatalf("first event of the new grant: %v", ev)
	}
	if _, err := s.Release(ctx, &beaconpb.LockReleaseRequest{Key: l2.Key, Token: l2.Token, SessionId: sess.ID}); err != nil {
		t.Fatal(err)
	}
	if ev := nextEvent(t, ws); ev.State != beaconpb.LockState_LOCK_STATE_RELEASED {
		t.Fatalf("event after release: %v", ev)
	}
	if err := watchEnd(t, done); err != nil {
		t.Fatalf("watch after release: %v", err)
	}
	_, done = watchGrant(ctx, s, l2.Key, l2.Token)
	wantCode(t, "watch of a released grant", watchEnd(t, done), codes.FailedPrecondition, "does not hold")
}
