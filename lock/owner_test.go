package lock

import (
	"strings"
	"testing"
	"time"

	"github.com/beaconhq/beacon/api/beaconpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/durationpb"
)

// Only the holder's session releases a grant: a key and token (which
// TryAcquire answers to anyone) are not enough, nor is another session.
func TestReleaseOnlyByHolderSession(t *testing.T) {
	s, m := testService(t)
	ctx := ctxT(t)
	holder, other := openSession(t, m), openSession(t, m)
	l, err := s.Acquire(ctx, &beaconpb.LockAcquireRequest{Name: "a", SessionId: holder.ID})
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.Release(ctx, &beaconpb.LockReleaseRequest{Key: l.Key, Token: l.Token})
	wantCode(t, "release without a session", err, codes.PermissionDenied, "session_id")
	_, err = s.Release(ctx, &beaconpb.LockReleaseRequest{Key: l.Key, Token: l.Token, SessionId: other.ID})
	wantCode(t, "release by another session", err, codes.PermissionDenied, "another session")
	_, err = s.Release(ctx, &beaconpb.LockReleaseRequest{Key: l.Key, Token: l.Token, SessionId: "0123456789abcdef0123456789abcdef"})
	wantCode(t, "release by an unknown session", err, codes.NotFound, "session_id")
	for _, e := range []error{err} {
		if strings.Contains(e.Error(), "0123456789abcdef") {
			t.Errorf("the error repeats the session id: %v", e)
		}
	}
	if held, err := Holds(ctx, s.cli, l.Key, l.Token); err != nil || !held {
		t.Fatalf("after the refused releases the grant holds: %v %v", held, err)
	}
	if _, err := s.Release(ctx, &beaconpb.LockReleaseRequest{Key: l.Key, Token: l.Token, SessionId: holder.ID}); err != nil {
		t.Fatalf("release by the holder: %v", err)
	}
}

// No answer to another client and nothing in etcd holds a session id:
// TryAcquire's holders, a timeout's message, the key's value.
func TestHolderSessionIDNotShown(t *testing.T) {
	s, m := testService(t)
	ctx := ctxT(t)
	holder, other := openSession(t, m), openSession(t, m)
	l, err := s.Acquire(ctx, &beaconpb.LockAcquireRequest{Name: "a", SessionId: holder.ID})
	if err != nil {
		t.Fatal(err)
	}
	r, err := s.TryAcquire(ctx, &beaconpb.LockAcquireRequest{Name: "a", SessionId: other.ID})
	if err != nil || r.Acquired || len(r.Holders) != 1 {
		t.Fatalf("TryAcquire of a held lock: %v %v", r, err)
	}
	if h := r.Holders[0]; h.Key != l.Key || h.Token != l.Token || h.Node != "n1" || h.SessionName != "test" {
		t.Errorf("holder %v; want key %s token %d on n1 named test", h, l.Key, l.Token)
	}
	if strings.Contains(r.String(), holder.ID) {
		t.Errorf("TryAcquire answered the holder's session id: %v", r)
	}
	_, err = s.Acquire(ctx, &beaconpb.LockAcquireRequest{Name: "a", SessionId: other.ID, Timeout: durationpb.New(50 * time.Millisecond)})
	wantCode(t, "timeout", err, codes.DeadlineExceeded, "held by test on n1")
	if strings.Contains(err.Error(), holder.ID) {
		t.Errorf("the timeout names the holder's session id: %v", err)
	}
	resp, err := s.cli.Get(ctx, s.prefix("a")+"/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range resp.Kvs {
		if strings.Contains(string(kv.Value), holder.ID) || strings.Contains(string(kv.Value), other.ID) {
			t.Errorf("etcd holds a session id at %s: %s", kv.Key, kv.Value)
		}
	}
}
