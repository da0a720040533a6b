package acl

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/beaconhq/beacon/api/beaconpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
)

// The example: a token for lock:batch-*:write takes batch-1 and
// cannot take payments, and the refusal names what is missing.
func TestScopedLockToken(t *testing.T) {
	a := startAgent(t, testEtcd(t), true)
	secret, _ := a.token(t, a.bootstrap(t), "lock:batch-*:write")
	conn := a.dialTCP(t, secret)
	sid, err := openSession(t, conn) // any valid token may open a session
	if err != nil {
		t.Fatal(err)
	}
	locks := beaconpb.NewLockClient(conn)
	got, err := locks.TryAcquire(ctxT(t), &beaconpb.LockAcquireRequest{Name: "batch-1", SessionId: sid})
	if err != nil || !got.Acquired {
		t.Fatalf("batch-1: %v %v; want acquired", got, err)
	}
	_, err = locks.Release(ctxT(t), &beaconpb.LockReleaseRequest{Key: got.Key, Token: got.Token, SessionId: sid})
	if err != nil {
		t.Fatalf("release batch-1: %v", err)
	}
	_, err = locks.TryAcquire(ctxT(t), &beaconpb.LockAcquireRequest{Name: "payments", SessionId: sid})
	wantCode(t, "payments", err, codes.PermissionDenied, "lock:payments:write")

	// A key of another lock, named to Release or Watch, is judged by the
	// lock it names.
	_, err = locks.Release(ctxT(t), &beaconpb.LockReleaseRequest{Key: a.ns + "locks/payments/694d1c5e3f1b2a01", Token: 5, SessionId: sid})
	wantCode(t, "release payments", err, codes.PermissionDenied, "lock:payments:write")
	w, err := locks.Watch(ctxT(t), &beaconpb.LockWatchRequest{Key: a.ns + "locks/payments/694d1c5e3f1b2a01", Token: 5})
	if err == nil {
		_, err = w.Recv()
	}
	wantCode(t, "watch payments", err, codes.PermissionDenied, "lock:payments:read")
}

// A read rule lets a token read and not write.
func TestReadCannotWrite(t *testing.T) {
	a := startAgent(t, testEtcd(t), true)
	mgmt := a.bootstrap(t)
	secret, _ := a.token(t, mgmt, "service:web:read")
	reg := beaconpb.NewRegistryClient(a.dialTCP(t, secret))

	_, err := reg.List(ctxT(t), &beaconpb.ListRequest{Service: "web"})
	if err != nil {
		t.Errorf("List web with service:web:read: %v", err)
	}
	_, err = reg.Register(ctxT(t), &beaconpb.RegisterRequest{Instance: &beaconpb.Instance{Service: "web", Id: "w1", Port: 80}})
	wantCode(t, "Register web", err, codes.PermissionDenied, "service:web:write")
	_, err = reg.List(ctxT(t), &beaconpb.ListRequest{Service: "db"})
	wantCode(t, "List db", err, codes.PermissionDenied, "service:db:read")

	// A stream is judged by its first message.
	ctx, cancel := context.WithCancel(ctxT(t))
	defer cancel()
	ok, err := reg.Watch(ctx, &beaconpb.WatchRequest{Service: "web"})
	if err == nil {
		_, err = ok.Recv()
	}
	if err != nil {
		t.Errorf("Watch web: %v", err)
	}
	bad, err := reg.Watch(ctx, &beaconpb.WatchRequest{Service: "db"})
	if err == nil {
		_, err = bad.Recv()
	}
	wantCode(t, "Watch db", err, codes.PermissionDenied, "service:db:read")

	// The management token writes.
	_, err = beaconpb.NewRegistryClient(a.dialTCP(t, mgmt)).Register(ctxT(t),
		&beaconpb.RegisterRequest{Instance: &beaconpb.Instance{Service: "web", Id: "w1", Port: 80}})
	if err != nil {
		t.Errorf("Register web with the management token: %v", err)
	}
}

// No token, or one nobody made: UNAUTHENTICATED; also for a session.
func TestNoTokenUnauthenticated(t *testing.T) {
	a := startAgent(t, testEtcd(t), true)
	a.bootstrap(t)
	for _, secret := range []string{"", strings.Repeat("ab", 32)} {
		conn := a.dialTCP(t, secret)
		_, err := beaconpb.NewLockClient(conn).TryAcquire(ctxT(t), &beaconpb.LockAcquireRequest{Name: "batch-1", SessionId: "x"})
		want := "needs a token"
		if secret != "" {
			want = "not known"
		}
		wantCode(t, "TryAcquire", err, codes.Unauthenticated, want)
		_, err = openSession(t, conn)
		wantCode(t, "Session.Open", err, codes.Unauthenticated, want)
		_, err = beaconpb.NewACLClient(conn).TokenList(ctxT(t), &beaconpb.ACLTokenListRequest{})
		wantCode(t, "TokenList", err, codes.Unauthenticated, want)
	}
}

// A token revoked through another agent (straight in etcd) is refused
// here once the watch delivered the delete; revoked through this agent,
// it is refused when TokenRevoke answers.
func TestRevokedTokenRefused(t *testing.T) {
	a := startAgent(t, testEtcd(t), true)
	mgmt := a.bootstrap(t)
	secret, accessor := a.token(t, mgmt, "service:*:read")
	reg := beaconpb.NewRegistryClient(a.dialTCP(t, secret))
	if _, err := reg.List(ctxT(t), &beaconpb.ListRequest{Service: "web"}); err != nil {
		t.Fatalf("before revoke: %v", err)
	}
	if _, err := NewStore(a.cli, a.ns).Revoke(ctxT(t), accessor); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		_, err := reg.List(ctxT(t), &beaconpb.ListRequest{Service: "web"})
		if status.Code(err) == codes.Unauthenticated {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("revoked token still accepted after 20s: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}

	secret2, accessor2 := a.token(t, mgmt, "service:*:read")
	reg2 := beaconpb.NewRegistryClient(a.dialTCP(t, secret2))
	if _, err := reg2.List(ctxT(t), &beaconpb.ListRequest{Service: "web"}); err != nil {
		t.Fatalf("second token before revoke: %v", err)
	}
	acl := beaconpb.NewACLClient(a.dialTCP(t, mgmt))
	if _, err := acl.TokenRevoke(ctxT(t), &beaconpb.ACLTokenRevokeRequest{AccessorId: accessor2}); err != nil {
		t.Fatal(err)
	}
	_, err := reg2.List(ctxT(t), &beaconpb.ListRequest{Service: "web"})
	wantCode(t, "right after TokenRevoke", err, codes.Unauthenticated, "not known")
	_, err = acl.TokenRevoke(ctxT(t), &beaconpb.ACLTokenRevokeRequest{AccessorId: accessor2})
	wantCode(t, "revoke twice", err, codes.NotFound, accessor2)
	_, err = acl.TokenRevoke(ctxT(t), &beaconpb.ACLTokenRevokeRequest{AccessorId: "nope"})
	wantCode(t, "revoke a bad id", err, codes.InvalidArgument, "accessor id")
}

// Bootstrap happens once: a second is refused, on this agent or any.
func TestBootstrapOnce(t *testing.T) {
	a := startAgent(t, testEtcd(t), true)
	acl := beaconpb.NewACLClient(a.dialSocket(t))
	first, err := acl.Bootstrap(ctxT(t), &beaconpb.ACLBootstrapRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if !first.Token.Management || len(first.Secret) < 32 {
		t.Errorf("bootstrap token %v, secret of %d characters; want management, ≥128 bits", first.Token, len(first.Secret))
	}
	_, err = acl.Bootstrap(ctxT(t), &beaconpb.ACLBootstrapRequest{})
	wantCode(t, "second bootstrap", err, codes.FailedPrecondition, "already done")
	_, _, _, err = NewStore(a.cli, a.ns).Bootstrap(ctxT(t)) // another agent's
	if err != ErrBootstrapped {
		t.Errorf("bootstrap through another store: %v; want ErrBootstrapped", err)
	}
	// Over TCP, without a client certificate, bootstrap is not offered
	// at all (the gate refuses it before the store is asked).
	_, err = beaconpb.NewACLClient(a.dialTCP(t, "")).Bootstrap(ctxT(t), &beaconpb.ACLBootstrapRequest{})
	wantCode(t, "bootstrap over TCP", err, codes.PermissionDenied, "unix socket")
}

// Concurrent bootstraps from many agents make exactly one token.
func TestBootstrapRace(t *testing.T) {
	cli := testEtcd(t)
	ns := testNamespace(t)
	const n = 8
	errs := make(chan error, n)
	for range n {
		go func() { _, _, _, err := NewStore(cli, ns).Bootstrap(ctxT(t)); errs <- err }()
	}
	won := 0
	for range n {
		switch err := <-errs; err {
		case nil:
			won++
		case ErrBootstrapped:
		default:
			t.Error(err)
		}
	}
	toks, err := NewStore(cli, ns).List(ctxT(t))
	if won != 1 || err != nil || len(toks) != 1 {
		t.Errorf("%d bootstraps won, %d tokens (%v); want 1 and 1", won, len(toks), err)
	}
}

// The unix socket is the agent's operator: no token needed for anything.
func TestUnixSocketIsOperator(t *testing.T) {
	a := startAgent(t, testEtcd(t), true)
	a.bootstrap(t)
	conn := a.dialSocket(t)
	sid, err := openSession(t, conn)
	if err != nil {
		t.Fatal(err)
	}
	got, err := beaconpb.NewLockClient(conn).TryAcquire(ctxT(t), &beaconpb.LockAcquireRequest{Name: "payments", SessionId: sid})
	if err != nil || !got.Acquired {
		t.Errorf("payments on the socket: %v %v", got, err)
	}
	if _, err := beaconpb.NewACLClient(conn).TokenList(ctxT(t), &beaconpb.ACLTokenListRequest{}); err != nil {
		t.Errorf("TokenList on the socket: %v", err)
	}
	// The same calls over TCP without a token are refused.
	_, err = beaconpb.NewACLClient(a.dialTCP(t, "")).TokenList(ctxT(t), &beaconpb.ACLTokenListRequest{})
	wantCode(t, "TokenList over TCP", err, codes.Unauthenticated, "token")
}

// TokenList never shows a secret (or its hash); operator:acl:read lists,
// and cannot create.
func TestTokenListNoSecrets(t *testing.T) {
	a := startAgent(t, testEtcd(t), true)
	mgmt := a.bootstrap(t)
	secret, accessor := a.token(t, mgmt, "lock:batch-*:write", "operator:acl:read")
	resp, err := beaconpb.NewACLClient(a.dialTCP(t, secret)).TokenList(ctxT(t), &beaconpb.ACLTokenListRequest{})
	if err != nil {
		t.Fatal(err)
	}
	text := protojson.Format(resp)
	for _, s := range []string{mgmt, HashSecret(mgmt), secret, HashSecret(secret)} {
		if strings.Contains(text, s) {
			t.Errorf("TokenList shows a secret or its hash: %s", text)
		}
	}
	if len(resp.Tokens) != 2 || resp.Tokens[1].AccessorId != accessor || !resp.Tokens[0].Management {
		t.Errorf("TokenList: %s", text)
	}
	_, err = beaconpb.NewACLClient(a.dialTCP(t, secret)).TokenCreate(ctxT(t), &beaconpb.ACLTokenCreateRequest{Rules: []string{"lock:*:write"}})
	wantCode(t, "TokenCreate with operator:acl:read", err, codes.PermissionDenied, "operator:acl:write")
	_, err = beaconpb.NewACLClient(a.dialTCP(t, mgmt)).TokenCreate(ctxT(t), &beaconpb.ACLTokenCreateRequest{Rules: []string{"lock:batch*x:write"}})
	wantCode(t, "TokenCreate with a bad rule", err, codes.InvalidArgument, "before its end")
}

// With ACLs off the gate passes every call, and the ACL service refuses
// to make tokens nothing would check.
func TestACLsOff(t *testing.T) {
	a := startAgent(t, testEtcd(t), false)
	conn := a.dialTCP(t, "")
	sid, err := openSession(t, conn)
	if err != nil {
		t.Fatal(err)
	}
	got, err := beaconpb.NewLockClient(conn).TryAcquire(ctxT(t), &beaconpb.LockAcquireRequest{Name: "payments", SessionId: sid})
	if err != nil || !got.Acquired {
		t.Errorf("payments with ACLs off: %v %v", got, err)
	}
	_, err = beaconpb.NewACLClient(a.dialSocket(t)).Bootstrap(ctxT(t), &beaconpb.ACLBootstrapRequest{})
	wantCode(t, "Bootstrap with ACLs off", err, codes.FailedPrecondition, "ACLs are off")
}

// The registry keeps service names in lower case: a rule that keeps
// payments read-only holds for "PAYMENTS" too.
func TestServiceNameCase(t *testing.T) {
	a := startAgent(t, testEtcd(t), true)
	secret, _ := a.token(t, a.bootstrap(t), "service:*:write", "service:payments:read")
	reg := beaconpb.NewRegistryClient(a.dialTCP(t, secret))
	_, err := reg.Register(ctxT(t), &beaconpb.RegisterRequest{Instance: &beaconpb.Instance{Service: "PAYMENTS", Id: "p1", Port: 80}})
	wantCode(t, "Register PAYMENTS", err, codes.PermissionDenied, "service:payments:write")
	if _, err := reg.Register(ctxT(t), &beaconpb.RegisterRequest{Instance: &beaconpb.Instance{Service: "Web", Id: "w1", Port: 80}}); err != nil {
		t.Errorf("Register Web: %v", err)
	}
}

// The token travels as `authorization: Bearer <secret>` (any case of
// "Bearer") or as `x-beacon-token`.
func TestTokenInMetadata(t *testing.T) {
	a := startAgent(t, testEtcd(t), true)
	mgmt := a.bootstrap(t)
	acl := beaconpb.NewACLClient(a.dialTCP(t, ""))
	for _, md := range [][]string{
		{"authorization", "Bearer " + mgmt},
		{"authorization", "bearer " + mgmt},
		{"x-beacon-token", mgmt},
	} {
		ctx := metadata.AppendToOutgoingContext(ctxT(t), md...)
		if _, err := acl.TokenList(ctx, &beaconpb.ACLTokenListRequest{}); err != nil {
			t.Errorf("%s: %v", md[0], err)
		}
	}
	ctx := metadata.AppendToOutgoingContext(ctxT(t), "authorization", "Basic "+mgmt)
	_, err := acl.TokenList(ctx, &beaconpb.ACLTokenListRequest{})
	wantCode(t, "Basic", err, codes.Unauthenticated, "needs a token")
}

// A Deregister or Heartbeat that leaves out the service finds the
// instance by its id under any service, so it needs write on every
// service: service:*:write with service:payments:read cannot take a
// payments instance down by naming only its id (the review's find: it
// was judged as service "" and let through).
func TestDeregisterWithoutServiceNeedsEveryService(t *testing.T) {
	a := startAgent(t, testEtcd(t), true)
	mgmt := a.bootstrap(t)
	admin := beaconpb.NewRegistryClient(a.dialTCP(t, mgmt))
	if _, err := admin.Register(ctxT(t), &beaconpb.RegisterRequest{Instance: &beaconpb.Instance{Service: "payments", Id: "p1", Port: 80}}); err != nil {
		t.Fatal(err)
	}
	secret, _ := a.token(t, mgmt, "service:*:write", "service:payments:read")
	reg := beaconpb.NewRegistryClient(a.dialTCP(t, secret))
	_, err := reg.Deregister(ctxT(t), &beaconpb.DeregisterRequest{Id: "p1"})
	wantCode(t, "Deregister p1 without its service", err, codes.PermissionDenied, "service:*:write")
	_, err = reg.Heartbeat(ctxT(t), &beaconpb.HeartbeatRequest{Id: "p1", Status: "fail"})
	wantCode(t, "Heartbeat p1 without its service", err, codes.PermissionDenied, "service:*:write")
	_, err = reg.Deregister(ctxT(t), &beaconpb.DeregisterRequest{Service: "payments", Id: "p1"})
	wantCode(t, "Deregister p1 of payments", err, codes.PermissionDenied, "service:payments:write")
	// Get reads the watch-fed catalog: register a marker after the refused
	// calls and wait for it, so the catalog has seen everything they did.
	if _, err := admin.Register(ctxT(t), &beaconpb.RegisterRequest{Instance: &beaconpb.Instance{Service: "payments", Id: "marker", Port: 81}}); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if _, err := admin.Get(ctxT(t), &beaconpb.GetRequest{Service: "payments", Id: "marker"}); err == nil {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("the marker never reached the catalog: %v", err)
		}
	}
	if _, err := admin.Get(ctxT(t), &beaconpb.GetRequest{Service: "payments", Id: "p1"}); err != nil {
		t.Fatalf("p1 is gone after the refused calls: %v", err)
	}
}
