package e2e

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/beaconhq/beacon/api/beaconpb"
	"github.com/beaconhq/beacon/client"
	"github.com/beaconhq/beacon/internal/testcluster"
	"github.com/miekg/dns"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
)

// ownersScene is one agent with a victim holding one of everything (a
// lock, a leadership, a registration with a TTL check, a queue
// reservation) in its session, and a hostile local client with a session
// of its own, on the same agent, as issue 9 tried them.
type ownersScene struct {
	a               *testcluster.Agent
	victim, hostile *client.Client
	vs, hs          *client.Session
	lock            *client.Hold
	lead            *client.Leadership
	res             *client.Reservation
	seen            []string // every answer and error the hostile client got, as text
}

func newOwnersScene(t *testing.T) *ownersScene {
	t.Helper()
	c := testcluster.New(t)
	a := c.Host("a")
	a.Start()
	a.WaitReady(readyWithin)
	sc := &ownersScene{a: a}
	var err error
	for _, cl := range []**client.Client{&sc.victim, &sc.hostile} {
		if *cl, err = client.New(a.APIAddr); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { (*cl).Close() })
	}
	ctx := ownersCtx(t)
	if sc.vs, err = sc.victim.NewSession(ctx, client.WithName("victim")); err != nil {
		t.Fatal(err)
	}
	if sc.hs, err = sc.hostile.NewSession(ctx, client.WithName("hostile")); err != nil {
		t.Fatal(err)
	}
	if sc.lock, err = sc.victim.Lock(ctx, sc.vs, "payments"); err != nil {
		t.Fatal(err)
	}
	if sc.lead, err = sc.victim.Campaign(ctx, sc.vs, "scheduler", "victim"); err != nil {
		t.Fatal(err)
	}
	if _, err := sc.victim.Registry.Register(ctx, &beaconpb.RegisterRequest{SessionId: sc.vs.ID, Check: &beaconpb.Check{Ttl: durationpb.New(time.Hour)},
		Instance: &beaconpb.Instance{Service: "pay", Id: "pay-1", Port: 8080, Address: "127.0.0.1"}}); err != nil {
		t.Fatal(err)
	}
	if err := sc.victimBeat("pass"); err != nil {
		t.Fatal(err)
	}
	waitDNS(t, a, "pay.service.beacon", dns.TypeA, "the victim's instance", has("A 127.0.0.1"))
	q := beaconpb.NewQueueClient(sc.victim.Conn())
	if _, err := q.Enqueue(ctx, &beaconpb.QueueEnqueueRequest{Queue: "jobs", Payload: []byte("victim's job")}); err != nil {
		t.Fatal(err)
	}
	if sc.res, err = sc.victim.Reserve(ctx, sc.vs, &beaconpb.QueueReserveRequest{Queue: "jobs"}); err != nil {
		t.Fatal(err)
	}
	return sc
}

func ownersCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// victimBeat is the victim's own heartbeat, in its session.
func (sc *ownersScene) victimBeat(st string) error {
	_, err := sc.victim.Registry.Heartbeat(context.Background(), &beaconpb.HeartbeatRequest{Service: "pay", Id: "pay-1", Status: st,
		SessionId: sc.vs.ID})
	return err
}

// saw records what the hostile client got back: an answer or an error.
func (sc *ownersScene) saw(m proto.Message, err error) error {
	if m != nil {
		sc.seen = append(sc.seen, fmt.Sprint(m))
	}
	if err != nil {
		sc.seen = append(sc.seen, err.Error())
	}
	return err
}

// wantRefused checks a hostile call's error code.
func wantRefused(t *testing.T, what string, err error, codes ...codes.Code) {
	t.Helper()
	for _, c := range codes {
		if status.Code(err) == c {
			return
		}
	}
	t.Errorf("%s: %v; want one of %v", what, err, codes)
}

// TestOwnersHostileClient: every way issue 9 found for one local client to
// take over another's holdings, tried by a client with a session of its
// own, knowing every key, token, rev, id and receipt layout it can see.
func TestOwnersHostileClient(t *testing.T) {
	sc := newOwnersScene(t)
	ctx := ownersCtx(t)
	lc := beaconpb.NewLockClient(sc.hostile.Conn())
	ec := beaconpb.NewElectionClient(sc.hostile.Conn())
	qc := beaconpb.NewQueueClient(sc.hostile.Conn())
	rc := sc.hostile.Registry

	// A reader of etcd learns no session id: lock holder info, the
	// proposal, the instance and the reservation name none (nor a
	// receipt's key).
	t.Run("EtcdHoldsNoSessionID", func(t *testing.T) {
		resp, err := sc.a.Client().Get(ctx, "/beacon/", clientv3.WithPrefix())
		if err != nil {
			t.Fatal(err)
		}
		for _, kv := range resp.Kvs {
			for _, id := range []string{sc.vs.ID, sc.hs.ID} {
				if strings.Contains(string(kv.Key), id) || strings.Contains(string(kv.Value), id) {
					t.Errorf("etcd holds a session id at %s: %s", kv.Key, kv.Value)
				}
			}
			if parts := strings.Split(sc.res.Receipt, "/"); len(parts) == 4 && strings.Contains(string(kv.Value), parts[2]) {
				t.Errorf("etcd holds the victim's receipt at %s", kv.Key)
			}
		}
	})

	// TryAcquire on a held lock answered the holders' session ids.
	t.Run("TryAcquireNamesNoSession", func(t *testing.T) {
		r, err := lc.TryAcquire(ctx, &beaconpb.LockAcquireRequest{Name: "payments", SessionId: sc.hs.ID})
		if sc.saw(r, err) != nil || r.Acquired || len(r.Holders) != 1 || r.Holders[0].Key != sc.lock.Key {
			t.Fatalf("TryAcquire of the victim's lock: %v %v", r, err)
		}
		if strings.Contains(fmt.Sprint(r), sc.vs.ID) {
			t.Errorf("TryAcquire answered the victim's session id: %v", r)
		}
		_, err = lc.Acquire(ctx, &beaconpb.LockAcquireRequest{Name: "payments", SessionId: sc.hs.ID, Timeout: durationpb.New(100 * time.Millisecond)})
		wantRefused(t, "acquire with a timeout", sc.saw(nil, err), codes.DeadlineExceeded)
	})

	// Release{key, token} without a session was accepted.
	t.Run("ReleaseNeedsTheHolder", func(t *testing.T) {
		_, err := lc.Release(ctx, &beaconpb.LockReleaseRequest{Key: sc.lock.Key, Token: sc.lock.Token})
		wantRefused(t, "release without a session", sc.saw(nil, err), codes.PermissionDenied)
		_, err = lc.Release(ctx, &beaconpb.LockReleaseRequest{Key: sc.lock.Key, Token: sc.lock.Token, SessionId: sc.hs.ID})
		wantRefused(t, "release in another session", sc.saw(nil, err), codes.PermissionDenied)
		select {
		case <-sc.lock.Lost():
			t.Fatalf("the victim lost its lock: %v", sc.lock.Err())
		default:
		}
		r, err := lc.TryAcquire(ctx, &beaconpb.LockAcquireRequest{Name: "payments", SessionId: sc.hs.ID})
		if sc.saw(r, err) != nil || r.Acquired {
			t.Fatalf("after the refused releases the hostile client got the lock: %v %v", r, err)
		}
	})

	// Resign with another client's session id ended its leadership.
	t.Run("ResignNeedsTheLeader", func(t *testing.T) {
		l, err := ec.Leader(ctx, &beaconpb.ElectionLeaderRequest{Name: "scheduler"})
		if sc.saw(l, err) != nil || l.Leader.Rev != sc.lead.Token {
			t.Fatalf("leader: %v %v", l, err)
		}
		_, err = ec.Resign(ctx, &beaconpb.ElectionResignRequest{Name: "scheduler", Rev: l.Leader.Rev})
		wantRefused(t, "resign without a session", sc.saw(nil, err), codes.PermissionDenied)
		_, err = ec.Resign(ctx, &beaconpb.ElectionResignRequest{Name: "scheduler", SessionId: sc.hs.ID, Rev: l.Leader.Rev})
		wantRefused(t, "resign in another session", sc.saw(nil, err), codes.PermissionDenied)
		_, err = ec.Proclaim(ctx, &beaconpb.ElectionProclaimRequest{Name: "scheduler", SessionId: sc.hs.ID, Rev: l.Leader.Rev, Proposal: "hostile"})
		wantRefused(t, "proclaim in another session", sc.saw(nil, err), codes.PermissionDenied)
		after, err := ec.Leader(ctx, &beaconpb.ElectionLeaderRequest{Name: "scheduler"})
		if sc.saw(after, err) != nil || after.Leader.Rev != sc.lead.Token || after.Leader.Proposal != "victim" {
			t.Fatalf("after the refused calls the leader is %v %v", after, err)
		}
	})

	// Queue receipts were QUEUE/SEQ/REV: the victim's message was acked on
	// the first guess, and Ack checked no session.
	t.Run("QueueReceiptsUnguessable", func(t *testing.T) {
		got, err := sc.a.Client().Get(ctx, fmt.Sprintf("/beacon/queues/jobs/res/%020s", sc.res.Message.Id))
		if err != nil || len(got.Kvs) != 1 {
			t.Fatalf("the victim's reservation in etcd: %v %v", got, err)
		}
		seq, rev := sc.res.Message.Id, got.Kvs[0].CreateRevision
		guesses := []string{
			fmt.Sprintf("jobs/%s/%d", seq, rev),                                        // the old layout
			fmt.Sprintf("jobs/%s/%s/%d", seq, strings.Repeat("0", 32), rev),            // a key guessed
			fmt.Sprintf("jobs/%s/%s/%d", seq, "0123456789abcdef0123456789abcdef", rev), // another
		}
		for _, g := range guesses {
			_, err := qc.Ack(ctx, &beaconpb.QueueAckRequest{Receipt: g})
			wantRefused(t, "ack of "+g, sc.saw(nil, err), codes.InvalidArgument, codes.FailedPrecondition, codes.PermissionDenied)
			_, err = qc.Nack(ctx, &beaconpb.QueueNackRequest{Receipt: g})
			wantRefused(t, "nack of "+g, sc.saw(nil, err), codes.InvalidArgument, codes.FailedPrecondition, codes.PermissionDenied)
			_, err = qc.Extend(ctx, &beaconpb.QueueExtendRequest{Receipt: g})
			wantRefused(t, "extend of "+g, sc.saw(nil, err), codes.InvalidArgument, codes.FailedPrecondition, codes.PermissionDenied)
		}
		// Even the true receipt, in another session, is refused.
		_, err = qc.Ack(ctx, &beaconpb.QueueAckRequest{Receipt: sc.res.Receipt, SessionId: sc.hs.ID})
		wantRefused(t, "ack of the true receipt in another session", sc.saw(nil, err), codes.PermissionDenied)
		st, err := qc.Stats(ctx, &beaconpb.QueueStatsRequest{Queue: "jobs"})
		if sc.saw(st, err) != nil || st.InFlight != 1 || st.Depth != 1 {
			t.Fatalf("after the guesses: %v %v; want the victim's message still reserved", st, err)
		}
		select {
		case <-sc.res.Lost():
			t.Fatalf("the victim lost its reservation: %v", sc.res.Err())
		default:
		}
	})

	// Deregister and Heartbeat checked no owner; re-registering another's
	// id moved its DNS answer.
	t.Run("RegistrationsNeedTheirOwner", func(t *testing.T) {
		_, err := rc.Deregister(ctx, &beaconpb.DeregisterRequest{Service: "pay", Id: "pay-1"})
		wantRefused(t, "deregister without a session", sc.saw(nil, err), codes.PermissionDenied)
		_, err = rc.Deregister(ctx, &beaconpb.DeregisterRequest{Service: "pay", Id: "pay-1", SessionId: sc.hs.ID})
		wantRefused(t, "deregister in another session", sc.saw(nil, err), codes.PermissionDenied)
		_, err = rc.Heartbeat(ctx, &beaconpb.HeartbeatRequest{Service: "pay", Id: "pay-1", Status: "fail"})
		wantRefused(t, "a fail heartbeat without a session", sc.saw(nil, err), codes.PermissionDenied)
		_, err = rc.Heartbeat(ctx, &beaconpb.HeartbeatRequest{Service: "pay", Id: "pay-1", Status: "fail", SessionId: sc.hs.ID})
		wantRefused(t, "a fail heartbeat in another session", sc.saw(nil, err), codes.PermissionDenied)
		for _, sess := range []string{"", sc.hs.ID} {
			r, err := rc.Register(ctx, &beaconpb.RegisterRequest{SessionId: sess,
				Instance: &beaconpb.Instance{Service: "pay", Id: "pay-1", Port: 9999, Address: "127.0.0.66"}})
			wantRefused(t, "register over the victim's id", sc.saw(r, err), codes.AlreadyExists, codes.PermissionDenied)
		}
		in, err := rc.Get(ctx, &beaconpb.GetRequest{Service: "pay", Id: "pay-1"})
		if sc.saw(in, err) != nil || in.Address != "127.0.0.1" || in.Port != 8080 || in.Status != "passing" {
			t.Fatalf("after the refused calls the victim's instance is %v %v", in, err)
		}
		if rrs, _ := dnsAnswer(t, sc.a, "pay.service.beacon", dns.TypeA); len(rrs) != 1 || rrs[0] != "A 127.0.0.1" {
			t.Fatalf("after the refused calls DNS answers %v", rrs)
		}
		list, err := rc.List(ctx, &beaconpb.ListRequest{})
		sc.saw(list, err)
		w, err := rc.Watch(ctx, &beaconpb.WatchRequest{Service: "pay"})
		if err == nil {
			snap, err := w.Recv()
			sc.saw(snap, err)
		}
	})

	// A client could register in another client's session: it learnt the
	// id from the answers above. Every token of hex it was shown is tried
	// as a session id.
	t.Run("NoSessionToBorrow", func(t *testing.T) {
		tried := 0
		for _, cand := range hexTokens(sc.seen) {
			if cand == sc.hs.ID {
				continue
			}
			tried++
			_, err := rc.Register(ctx, &beaconpb.RegisterRequest{SessionId: cand,
				Instance: &beaconpb.Instance{Service: "borrowed", Id: "b-" + cand[:8], Port: 1}})
			if status.Code(err) != codes.NotFound {
				t.Errorf("register in session %q, seen in an answer: %v; want NotFound", cand, err)
			}
		}
		t.Logf("%d hex tokens seen in %d answers and errors tried as session ids", tried, len(sc.seen))
		for _, s := range sc.seen {
			if strings.Contains(s, sc.vs.ID) {
				t.Errorf("the hostile client was shown the victim's session id: %s", s)
			}
		}
	})

	// The victim's own calls still work, and the agent logged no session id.
	t.Run("OwnersStillAct", func(t *testing.T) {
		if err := sc.victimBeat("warn"); err != nil {
			t.Fatalf("the victim's heartbeat: %v", err)
		}
		if err := sc.res.Ack(ctx); err != nil {
			t.Fatalf("the victim's ack: %v", err)
		}
		if err := sc.lead.Release(ctx); err != nil {
			t.Fatalf("the victim's resign: %v", err)
		}
		if err := sc.lock.Release(ctx); err != nil {
			t.Fatalf("the victim's release: %v", err)
		}
		if _, err := sc.victim.Registry.Deregister(ctx, &beaconpb.DeregisterRequest{Service: "pay", Id: "pay-1", SessionId: sc.vs.ID}); err != nil {
			t.Fatalf("the victim's deregister: %v", err)
		}
		log := sc.a.Log()
		for _, id := range []string{sc.vs.ID, sc.hs.ID} {
			if strings.Contains(log, id) {
				t.Errorf("the agent's log (level info) holds a session id:\n%s", log)
			}
		}
	})
}

var hexRun = regexp.MustCompile(`[0-9a-f]{16,}`)

// hexTokens are the runs of 16 or more hex digits in texts, once each.
func hexTokens(texts []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, s := range texts {
		for _, m := range hexRun.FindAllString(s, -1) {
			if !seen[m] {
				seen[m] = true
				out = append(out, m)
			}
		}
	}
	return out
}

// TestOwnersAgentRegistrations: the CLI's agent-owned registrations stay
// the CLI's (a session cannot deregister, beat or take them), and the CLI
// still deregisters them and reports their TTL checks as README says.
func TestOwnersAgentRegistrations(t *testing.T) {
	c := testcluster.New(t)
	a := c.Host("a")
	a.Start()
	a.WaitReady(readyWithin)
	if _, stderr, err := a.CLI("register", "--name", "batch", "--port", "9000", "--id", "b1", "--ttl", "1h"); err != nil {
		t.Fatalf("register: %v %s", err, stderr)
	}
	if _, stderr, err := a.CLI("check", "pass", "b1"); err != nil {
		t.Fatalf("check pass: %v %s", err, stderr)
	}
	waitDNS(t, a, "batch.service.beacon", dns.TypeA, "b1 passing", has("A "+a.IP))
	cl, err := client.New(a.APIAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx := ownersCtx(t)
	sess, err := cl.NewSession(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	_, err = cl.Registry.Deregister(ctx, &beaconpb.DeregisterRequest{Id: "b1", SessionId: sess.ID})
	wantRefused(t, "a session deregistering an agent-owned instance", err, codes.PermissionDenied)
	_, err = cl.Registry.Heartbeat(ctx, &beaconpb.HeartbeatRequest{Id: "b1", Status: "fail", SessionId: sess.ID})
	wantRefused(t, "a session's fail heartbeat of an agent-owned instance", err, codes.PermissionDenied)
	_, err = cl.Registry.Register(ctx, &beaconpb.RegisterRequest{SessionId: sess.ID, Instance: &beaconpb.Instance{Service: "batch", Id: "b1", Port: 9999}})
	wantRefused(t, "a session registering over an agent-owned instance", err, codes.AlreadyExists)
	if rrs, _ := dnsAnswer(t, a, "batch.service.beacon", dns.TypeA); len(rrs) != 1 {
		t.Fatalf("after the refused calls DNS answers %v", rrs)
	}
	if _, stderr, err := a.CLI("check", "fail", "b1"); err != nil {
		t.Fatalf("check fail: %v %s", err, stderr)
	}
	waitDNS(t, a, "batch.service.beacon", dns.TypeA, "b1 out", empty)
	if _, stderr, err := a.CLI("deregister", "b1"); err != nil {
		t.Fatalf("deregister: %v %s", err, stderr)
	}
	// A session's instance is not the CLI's.
	if _, err := cl.Registry.Register(ctx, &beaconpb.RegisterRequest{SessionId: sess.ID, Instance: &beaconpb.Instance{Service: "app", Id: "app1", Port: 80}}); err != nil {
		t.Fatal(err)
	}
	if _, stderr, err := a.CLI("deregister", "app1"); err == nil || !strings.Contains(stderr, "permission denied") || strings.Contains(stderr, sess.ID) {
		t.Fatalf("the CLI deregistering a session's instance: %v %s", err, stderr)
	}
	if _, stderr, err := a.CLI("check", "fail", "app1"); err == nil || !strings.Contains(stderr, "permission denied") {
		t.Fatalf("the CLI beating a session's instance: %v %s", err, stderr)
	}
	// The SDK beats and deregisters what it registered, in its session.
	if _, err := cl.Register(ctx, &beaconpb.Instance{Service: "sdk", Id: "sdk1", Port: 80}, &beaconpb.Check{Ttl: durationpb.New(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if err := cl.Heartbeat(ctx, "sdk", "sdk1", "pass", ""); err != nil {
		t.Fatalf("the SDK's heartbeat of its own instance: %v", err)
	}
	waitDNS(t, a, "sdk.service.beacon", dns.TypeA, "sdk1 passing", has("A "+a.IP))
	if err := cl.Deregister(ctx, "", "sdk1"); err != nil {
		t.Fatalf("the SDK's deregister of its own instance: %v", err)
	}
	waitDNS(t, a, "sdk.service.beacon", dns.TypeA, "sdk1 gone", empty)
}
