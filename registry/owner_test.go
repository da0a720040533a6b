package registry

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/beaconhq/beacon/api/beaconpb"
	"github.com/beaconhq/beacon/healthcheck"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
)

// Who may change which registration: a session's instance only in that
// session, an agent-owned one only without a session, a config file's one
// never through the API (but its TTL check takes heartbeats without a
// session). No refusal names another owner's session id.
func TestOwnersChecked(t *testing.T) {
	l, _ := testLocal(t, t.TempDir())
	svc := NewService(l, l.catalog)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	a, err := l.sessions.Open(ctx, "a", 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	b, err := l.sessions.Open(ctx, "b", 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	ttl := &beaconpb.Check{Ttl: durationpb.New(time.Hour)}
	reg := func(id, sess string, port uint32) error {
		_, err := svc.Register(ctx, &beaconpb.RegisterRequest{SessionId: sess, Check: ttl,
			Instance: &beaconpb.Instance{Service: "web", Id: id, Port: port}})
		return err
	}
	if err := reg("a1", a.ID, 80); err != nil {
		t.Fatal(err)
	}
	if err := reg("g1", "", 81); err != nil {
		t.Fatal(err)
	}
	if _, _, err := l.Register(ctx, Instance{Service: "web", ID: "c1", Port: 82}, healthcheck.Definition{TTL: time.Hour}, OwnerConfig); err != nil {
		t.Fatal(err)
	}
	dereg := func(id, sess string) error {
		_, err := svc.Deregister(ctx, &beaconpb.DeregisterRequest{Service: "web", Id: id, SessionId: sess})
		return err
	}
	beat := func(id, sess, st string) error {
		_, err := svc.Heartbeat(ctx, &beaconpb.HeartbeatRequest{Service: "web", Id: id, SessionId: sess, Status: st})
		return err
	}
	const unknown = "00112233445566778899aabbccddeeff"
	for _, tc := range []struct {
		what string
		err  error
		code codes.Code
	}{
		{"deregister a1 without a session", dereg("a1", ""), codes.PermissionDenied},
		{"deregister a1 by another session", dereg("a1", b.ID), codes.PermissionDenied},
		{"deregister a1 by an unknown session", dereg("a1", unknown), codes.NotFound},
		{"heartbeat a1 without a session", beat("a1", "", "fail"), codes.PermissionDenied},
		{"heartbeat a1 by another session", beat("a1", b.ID, "fail"), codes.PermissionDenied},
		{"register a1 by another session", reg("a1", b.ID, 9999), codes.AlreadyExists},
		{"register a1 without a session", reg("a1", "", 9999), codes.AlreadyExists},
		{"register a1 in an unknown session", reg("a1", unknown, 9999), codes.NotFound},
		{"deregister g1 by a session", dereg("g1", a.ID), codes.PermissionDenied},
		{"heartbeat g1 by a session", beat("g1", a.ID, "fail"), codes.PermissionDenied},
		{"register g1 by a session", reg("g1", a.ID, 9999), codes.AlreadyExists},
		{"deregister c1 without a session", dereg("c1", ""), codes.PermissionDenied},
		{"deregister c1 by a session", dereg("c1", a.ID), codes.PermissionDenied},
		{"heartbeat c1 by a session", beat("c1", a.ID, "fail"), codes.PermissionDenied},
	} {
		if status.Code(tc.err) != tc.code {
			t.Errorf("%s: %v, want %v", tc.what, tc.err, tc.code)
		}
		for _, id := range []string{a.ID, b.ID, unknown} {
			if tc.err != nil && strings.Contains(tc.err.Error(), id) {
				t.Errorf("%s: the error names a session id: %v", tc.what, tc.err)
			}
		}
	}
	for _, r := range l.Registrations() {
		if r.Instance.Port == 9999 || r.Instance.Status != StatusCritical {
			t.Errorf("after the refused calls %s/%s is %+v", r.Instance.Service, r.Instance.ID, r.Instance)
		}
	}
	if len(l.Registrations()) != 3 {
		t.Fatalf("after the refused calls: %d registrations, want 3", len(l.Registrations()))
	}
	// The owners' own calls work.
	for _, tc := range []struct {
		what string
		err  error
	}{
		{"heartbeat a1 by its session", beat("a1", a.ID, "pass")},
		{"heartbeat g1 without a session", beat("g1", "", "pass")},
		{"heartbeat c1 without a session", beat("c1", "", "pass")},
		{"register a1 again by its session", reg("a1", a.ID, 80)},
		{"deregister a1 by its session", dereg("a1", a.ID)},
		{"deregister g1 without a session", dereg("g1", "")},
	} {
		if tc.err != nil {
			t.Errorf("%s: %v", tc.what, tc.err)
		}
	}
}
