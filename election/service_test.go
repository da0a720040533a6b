package election_test

import (
	"context"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/beaconhq/beacon/api/beaconpb"
	"github.com/beaconhq/beacon/client"
	"github.com/beaconhq/beacon/election"
	"github.com/beaconhq/beacon/session"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
)

// serve runs the Session and Election services over real gRPC on
// loopback, as the agent does.
func serve(t *testing.T) (*clientv3.Client, *client.Client, beaconpb.ElectionClient) {
	t.Helper()
	cli := startEtcd(t)
	m := session.NewManager(cli)
	srv := grpc.NewServer()
	beaconpb.RegisterSessionServer(srv, session.NewService(m))
	beaconpb.RegisterElectionServer(srv, election.NewService(cli, m, "/beacon/"))
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(func() { m.CloseAll(0); srv.Stop() })
	c, err := client.New(lis.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return cli, c, beaconpb.NewElectionClient(c.Conn())
}

func openSession(t *testing.T, c *client.Client) *client.Session {
	t.Helper()
	// A short TTL: the agent renews every TTL/3, which is when it notices
	// a lease that etcd ended.
	s, err := c.NewSession(ctxT(t), client.WithTTL(3*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func wantCode(t *testing.T, err error, code codes.Code, contains string) {
	t.Helper()
	s, _ := status.FromError(err)
	if s.Code() != code || !strings.Contains(s.Message(), contains) {
		t.Fatalf("got %v, want %v naming %q", err, code, contains)
	}
}

func TestServiceBadInput(t *testing.T) {
	_, c, ec := serve(t)
	ctx := ctxT(t)
	s := openSession(t, c)
	big := strings.Repeat("p", election.MaxProposalBytes+1)
	for _, tc := range []struct {
		req   *beaconpb.ElectionCampaignRequest
		field string
	}{
		{&beaconpb.ElectionCampaignRequest{Name: "", SessionId: s.ID}, "name"},
		{&beaconpb.ElectionCampaignRequest{Name: "a/b", SessionId: s.ID}, "name"},
		{&beaconpb.ElectionCampaignRequest{Name: "ok", SessionId: s.ID, Proposal: big}, "proposal"},
		{&beaconpb.ElectionCampaignRequest{Name: "ok", SessionId: s.ID, Timeout: durationpb.New(-time.Millisecond)}, "timeout"},
		{&beaconpb.ElectionCampaignRequest{Name: "ok", SessionId: s.ID, Timeout: durationpb.New(election.MaxTimeout + time.Millisecond)}, "timeout"},
		{&beaconpb.ElectionCampaignRequest{Name: "ok"}, "session_id"},
	} {
		_, err := ec.Campaign(ctx, tc.req)
		wantCode(t, err, codes.InvalidArgument, tc.field)
	}
	_, err := ec.Campaign(ctx, &beaconpb.ElectionCampaignRequest{Name: "ok", SessionId: "nope"})
	wantCode(t, err, codes.NotFound, "session_id")
	_, err = ec.Proclaim(ctx, &beaconpb.ElectionProclaimRequest{Name: "ok", SessionId: s.ID, Rev: 0})
	wantCode(t, err, codes.InvalidArgument, "rev")
	_, err = ec.Resign(ctx, &beaconpb.ElectionResignRequest{Name: "", SessionId: s.ID, Rev: 1})
	wantCode(t, err, codes.InvalidArgument, "name")
	_, err = ec.Leader(ctx, &beaconpb.ElectionLeaderRequest{Name: "x/y"})
	wantCode(t, err, codes.InvalidArgument, "name")
	_, err = ec.Leader(ctx, &beaconpb.ElectionLeaderRequest{Name: "nobody"})
	wantCode(t, err, codes.NotFound, "no leader")
	obs, err := ec.Observe(ctx, &beaconpb.ElectionObserveRequest{Name: ""})
	if err == nil {
		_, err = obs.Recv()
	}
	wantCode(t, err, codes.InvalidArgument, "name")
	wl, err := ec.WatchLeadership(ctx, &beaconpb.ElectionWatchLeadershipRequest{Name: "ok", SessionId: s.ID, Rev: -3})
	if err == nil {
		_, err = wl.Recv()
	}
	wantCode(t, err, codes.InvalidArgument, "rev")
}

// A leader whose lease ends is told so at once, cannot proclaim, and the
// next candidate leads.
func TestServiceLeaseEndLosesLeadership(t *testing.T) {
	cli, c, ec := serve(t)
	ctx := ctxT(t)
	a, b := openSession(t, c), openSession(t, c)
	won, err := ec.Campaign(ctx, &beaconpb.ElectionCampaignRequest{Name: "svc", SessionId: a.ID, Proposal: "a"})
	if err != nil {
		t.Fatal(err)
	}
	watch, err := ec.WatchLeadership(ctx, &beaconpb.ElectionWatchLeadershipRequest{Name: "svc", SessionId: a.ID, Rev: won.Leader.Rev})
	if err != nil {
		t.Fatal(err)
	}
	if ev, err := watch.Recv(); err != nil || ev.Leader.Rev != won.Leader.Rev {
		t.Fatalf("first leadership event: %v %v", ev, err)
	}
	bWon := make(chan *beaconpb.ElectionCampaignResponse, 1)
	go func() {
		r, err := ec.Campaign(ctx, &beaconpb.ElectionCampaignRequest{Name: "svc", SessionId: b.ID, Proposal: "b"})
		if err != nil {
			t.Error(err)
		}
		bWon <- r
	}()

	// etcd ends a's lease behind the agent's back, as an expiry during a
	// partition would; the agent grants the session a new one.
	lease, _ := strconv.ParseInt(a.Lease, 16, 64)
	if _, err := cli.Revoke(ctx, clientv3.LeaseID(lease)); err != nil {
		t.Fatal(err)
	}
	_, err = watch.Recv()
	wantCode(t, err, codes.FailedPrecondition, "")
	r := <-bWon
	if r == nil || r.Leader.Rev <= won.Leader.Rev || r.Leader.Proposal != "b" {
		t.Fatalf("b's campaign: %v", r)
	}
	_, err = ec.Proclaim(ctx, &beaconpb.ElectionProclaimRequest{Name: "svc", SessionId: a.ID, Rev: won.Leader.Rev, Proposal: "stale"})
	wantCode(t, err, codes.FailedPrecondition, "")
	lead, err := ec.Leader(ctx, &beaconpb.ElectionLeaderRequest{Name: "svc"})
	if err != nil || lead.Leader.Proposal != "b" {
		t.Fatalf("leader %v %v", lead, err)
	}
	// a's session lives on with a new lease and can campaign again, behind b.
	select {
	case ev := <-a.Events():
		if ev.GetLeaseLost() == nil {
			t.Fatalf("session event %v, want lease_lost", ev)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("the session never reported its new lease")
	}
	tctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_, err = ec.Campaign(tctx, &beaconpb.ElectionCampaignRequest{Name: "svc", SessionId: a.ID, Proposal: "a", Timeout: durationpb.New(100 * time.Millisecond)})
	wantCode(t, err, codes.DeadlineExceeded, "")
}

// Closing the session ends the leadership and a waiting candidacy alike.
func TestServiceSessionCloseEndsLeadership(t *testing.T) {
	cli, c, ec := serve(t)
	ctx := ctxT(t)
	a, b := openSession(t, c), openSession(t, c)
	won, err := ec.Campaign(ctx, &beaconpb.ElectionCampaignRequest{Name: "close", SessionId: a.ID})
	if err != nil {
		t.Fatal(err)
	}
	watch, err := ec.WatchLeadership(ctx, &beaconpb.ElectionWatchLeadershipRequest{Name: "close", SessionId: a.ID, Rev: won.Leader.Rev})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := watch.Recv(); err != nil {
		t.Fatal(err)
	}
	waiting := make(chan error, 1)
	go func() {
		_, err := ec.Campaign(ctx, &beaconpb.ElectionCampaignRequest{Name: "close", SessionId: b.ID})
		waiting <- err
	}()
	// b's candidacy ends with its session, before a's leadership does.
	e, _ := election.New(cli, "/beacon/", "close")
	waitCandidates(t, cli, e, 2)
	b.Close()
	wantCode(t, <-waiting, codes.FailedPrecondition, "")
	a.Close()
	_, err = watch.Recv()
	wantCode(t, err, codes.FailedPrecondition, "")
	_, err = ec.Leader(ctx, &beaconpb.ElectionLeaderRequest{Name: "close"})
	wantCode(t, err, codes.NotFound, "")
}
