package election_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/beaconhq/beacon/election"
	"github.com/beaconhq/beacon/internal/etcdtest"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
)

type result struct {
	l   election.Leader
	err error
}

func campaignAsync(ctx context.Context, e *election.Election, lease clientv3.LeaseID, proposal string) <-chan result {
	ch := make(chan result, 1)
	go func() {
		l, err := e.Campaign(ctx, lease, proposal)
		ch <- result{l, err}
	}()
	return ch
}

// waitCandidates waits until n keys campaign in e.
func waitCandidates(t *testing.T, cli *clientv3.Client, e *election.Election, n int64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := cli.Get(context.Background(), e.Prefix(), clientv3.WithPrefix(), clientv3.WithCountOnly())
		if err != nil {
			t.Fatal(err)
		}
		if resp.Count == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d candidates, want %d", resp.Count, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func mustNotReturn(t *testing.T, ch <-chan result, who string) {
	t.Helper()
	select {
	case r := <-ch:
		t.Fatalf("%s returned while another leads: %+v", who, r)
	default:
	}
}

func TestCampaignInOrderAndHandOver(t *testing.T) {
	cli := startEtcd(t)
	ctx := ctxT(t)
	e, err := election.New(cli, "/beacon/", "order")
	if err != nil {
		t.Fatal(err)
	}
	l1, l2, l3 := grant(t, cli, 60), grant(t, cli, 60), grant(t, cli, 60)

	first, err := e.Campaign(ctx, l1, "one")
	if err != nil {
		t.Fatal(err)
	}
	if first.Key != fmt.Sprintf("/beacon/elections/order/%x", int64(l1)) {
		t.Fatalf("key %q is not etcd's layout", first.Key)
	}
	c2 := campaignAsync(ctx, e, l2, "two")
	waitCandidates(t, cli, e, 2)
	c3 := campaignAsync(ctx, e, l3, "three")
	waitCandidates(t, cli, e, 3)
	mustNotReturn(t, c2, "second")
	mustNotReturn(t, c3, "third")

	if ok, err := e.Resign(ctx, first); err != nil || !ok {
		t.Fatalf("resign: %v %v", ok, err)
	}
	r2 := <-c2
	if r2.err != nil || r2.l.Proposal != "two" || r2.l.Rev <= first.Rev {
		t.Fatalf("second: %+v (first rev %d)", r2, first.Rev)
	}
	mustNotReturn(t, c3, "third")
	// A revoked lease hands over the same way.
	if _, err := cli.Revoke(ctx, l2); err != nil {
		t.Fatal(err)
	}
	r3 := <-c3
	if r3.err != nil || r3.l.Rev <= r2.l.Rev {
		t.Fatalf("third: %+v (second rev %d)", r3, r2.l.Rev)
	}
	cur, _, err := e.Leader(ctx)
	if err != nil || cur.Key != r3.l.Key || cur.Proposal != "three" {
		t.Fatalf("leader %+v %v", cur, err)
	}
	// Campaigning again with the same lease keeps the same term.
	again, err := e.Campaign(ctx, l3, "three")
	if err != nil || again.Rev != r3.l.Rev {
		t.Fatalf("campaign again: %+v %v", again, err)
	}
}

func TestCampaignNeverWinsWithAnEndedLease(t *testing.T) {
	cli := startEtcd(t)
	ctx := ctxT(t)
	e, _ := election.New(cli, "/beacon/", "ended")
	leader, waiter := grant(t, cli, 60), grant(t, cli, 60)
	if _, err := e.Campaign(ctx, leader, "a"); err != nil {
		t.Fatal(err)
	}
	c := campaignAsync(ctx, e, waiter, "b")
	waitCandidates(t, cli, e, 2)
	// The waiter's lease ends first, then the leader's: the waiter must
	// not report a win although nobody is left ahead of it.
	if _, err := cli.Revoke(ctx, waiter); err != nil {
		t.Fatal(err)
	}
	r := <-c
	if !errors.Is(r.err, election.ErrLost) {
		t.Fatalf("campaign with a revoked lease: %+v, want ErrLost", r)
	}
	if _, err := e.Campaign(ctx, waiter, "b"); !errors.Is(err, election.ErrLost) {
		t.Fatalf("campaign with a revoked lease: %v, want ErrLost", err)
	}
}

func TestCampaignTimeoutWithdraws(t *testing.T) {
	cli := startEtcd(t)
	ctx := ctxT(t)
	e, _ := election.New(cli, "/beacon/", "timeout")
	leader, waiter := grant(t, cli, 60), grant(t, cli, 60)
	first, err := e.Campaign(ctx, leader, "a")
	if err != nil {
		t.Fatal(err)
	}
	tctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	if _, err := e.Campaign(tctx, waiter, "b"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("campaign: %v, want DeadlineExceeded", err)
	}
	// No key is left behind to lead unannounced once the leader goes.
	resp, err := cli.Get(ctx, e.Key(waiter))
	if err != nil || len(resp.Kvs) != 0 {
		t.Fatalf("withdrawn candidate's key: %v %v", resp.Kvs, err)
	}
	if ok, _ := e.Resign(ctx, first); !ok {
		t.Fatal("resign")
	}
	if _, _, err := e.Leader(ctx); !errors.Is(err, election.ErrNoLeader) {
		t.Fatalf("leader after resign: %v, want ErrNoLeader", err)
	}
}

func TestProclaimCheckAndStaleLeader(t *testing.T) {
	cli := startEtcd(t)
	ctx := ctxT(t)
	e, _ := election.New(cli, "/beacon/", "proclaim")
	lease := grant(t, cli, 60)
	l, err := e.Campaign(ctx, lease, "v1")
	if err != nil {
		t.Fatal(err)
	}
	if l, err = e.Proclaim(ctx, l, "v2"); err != nil || l.Proposal != "v2" {
		t.Fatalf("proclaim: %+v %v", l, err)
	}
	if cur, err := e.Check(ctx, l); err != nil || cur.Proposal != "v2" {
		t.Fatalf("check: %+v %v", cur, err)
	}
	// A candidate behind the leader is not a leader.
	other := grant(t, cli, 60)
	c := campaignAsync(ctx, e, other, "x")
	waitCandidates(t, cli, e, 2)
	resp, _ := cli.Get(ctx, e.Key(other))
	behind := election.Leader{Key: e.Key(other), Rev: resp.Kvs[0].CreateRevision, Lease: other}
	if _, err := e.Check(ctx, behind); !errors.Is(err, election.ErrNotLeader) {
		t.Fatalf("check of a candidate: %v, want ErrNotLeader", err)
	}
	if ok, err := e.Resign(ctx, l); !ok || err != nil {
		t.Fatalf("resign: %v %v", ok, err)
	}
	<-c
	if _, err := e.Proclaim(ctx, l, "v3"); !errors.Is(err, election.ErrNotLeader) {
		t.Fatalf("proclaim after resign: %v, want ErrNotLeader", err)
	}
	if ok, err := e.Resign(ctx, l); ok || err != nil {
		t.Fatalf("second resign: %v %v, want false", ok, err)
	}
	if _, err := e.Proclaim(ctx, l, strings.Repeat("x", election.MaxProposalBytes+1)); err == nil {
		t.Fatal("a proposal over 1 MiB was accepted")
	}
}

func TestWaitLost(t *testing.T) {
	cli := startEtcd(t)
	ctx := ctxT(t)
	e, _ := election.New(cli, "/beacon/", "lost")
	lease := grant(t, cli, 60)
	l, err := e.Campaign(ctx, lease, "v")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- e.WaitLost(ctx, l, 500*time.Millisecond) }()
	// A proclaim is no loss.
	if _, err := e.Proclaim(ctx, l, "w"); err != nil {
		t.Fatal(err)
	}
	// WaitLost sees the proclaim on its watch and confirms every 500ms:
	// four confirm periods with the leader in place is what makes a
	// wrongful return observable (a non-blocking look right after Proclaim
	// is not). Periods of 50ms were too short for a loaded machine under
	// -race to confirm in.
	select {
	case err := <-done:
		t.Fatalf("WaitLost returned on a proclaim: %v", err)
	case <-time.After(2 * time.Second):
	}
	if _, err := cli.Revoke(ctx, lease); err != nil {
		t.Fatal(err)
	}
	if err := <-done; !errors.Is(err, election.ErrLost) {
		t.Fatalf("WaitLost: %v, want ErrLost", err)
	}
}

// A leader that cannot reach the cluster is told it lost, before its
// lease could expire there.
func TestWaitLostWhenCutOff(t *testing.T) {
	cli, srv := etcdtest.New(t)
	ctx := ctxT(t)
	e, _ := election.New(cli, "/beacon/", "cut-off")
	l, err := e.Campaign(ctx, grant(t, cli, 60), "v")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- e.WaitLost(ctx, l, 100*time.Millisecond) }()
	srv.Server.Stop() // the cluster is gone; the key is not deleted
	if err := <-done; !errors.Is(err, election.ErrLost) || !strings.Contains(err.Error(), "cannot confirm") {
		t.Fatalf("WaitLost: %v, want ErrLost for want of confirmation", err)
	}
}

// Observe reports the state it starts from, then every leader and
// proposal, in order.
func TestObserveInOrder(t *testing.T) {
	cli := startEtcd(t)
	ctx := ctxT(t)
	e, _ := election.New(cli, "/beacon/", "observe")
	var mu sync.Mutex
	var seen []string
	octx, stop := context.WithCancel(ctx)
	observed := make(chan error, 1)
	go func() {
		observed <- e.Observe(octx, func(o election.Observation) error {
			mu.Lock()
			defer mu.Unlock()
			if o.Leader == nil {
				seen = append(seen, "none")
			} else {
				seen = append(seen, o.Leader.Proposal)
			}
			return nil
		})
	}()
	waitSeen := func(n int) []string {
		deadline := time.Now().Add(10 * time.Second)
		for {
			mu.Lock()
			s := append([]string(nil), seen...)
			mu.Unlock()
			if len(s) >= n || time.Now().After(deadline) {
				return s
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	waitSeen(1)
	a, b := grant(t, cli, 60), grant(t, cli, 60)
	la, err := e.Campaign(ctx, a, "a1")
	if err != nil {
		t.Fatal(err)
	}
	cb := campaignAsync(ctx, e, b, "b1")
	waitCandidates(t, cli, e, 2)
	if la, err = e.Proclaim(ctx, la, "a2"); err != nil {
		t.Fatal(err)
	}
	// a resigns, b leads; b's lease is revoked, nobody leads.
	if _, err := e.Resign(ctx, la); err != nil {
		t.Fatal(err)
	}
	rb := <-cb
	if rb.err != nil {
		t.Fatal(rb.err)
	}
	if _, err := cli.Revoke(ctx, b); err != nil {
		t.Fatal(err)
	}
	want := []string{"none", "a1", "a2", "b1", "none"}
	got := waitSeen(len(want))
	stop()
	if err := <-observed; !errors.Is(err, context.Canceled) {
		t.Fatalf("observe ended with %v", err)
	}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("observed %v, want %v", got, want)
	}
}

// concurrency.Election and this package campaign in one election.
func TestInteropWithConcurrencyElection(t *testing.T) {
	cli := startEtcd(t)
	ctx := ctxT(t)
	s, err := concurrency.NewSession(cli, concurrency.WithTTL(60))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	theirs := concurrency.NewElection(s, "/beacon/elections/interop")
	if err := theirs.Campaign(ctx, "etcd"); err != nil {
		t.Fatal(err)
	}
	e, _ := election.New(cli, "/beacon/", "interop")
	lease := grant(t, cli, 60)
	c := campaignAsync(ctx, e, lease, "beacon")
	waitCandidates(t, cli, e, 2)
	mustNotReturn(t, c, "beacon's campaign")
	if cur, _, err := e.Leader(ctx); err != nil || cur.Proposal != "etcd" || cur.Key != theirs.Key() {
		t.Fatalf("leader %+v %v, want etcd's", cur, err)
	}
	if err := theirs.Resign(ctx); err != nil {
		t.Fatal(err)
	}
	r := <-c
	if r.err != nil {
		t.Fatal(r.err)
	}
	resp, err := theirs.Leader(ctx)
	if err != nil || string(resp.Kvs[0].Value) != "beacon" {
		t.Fatalf("concurrency.Election's leader: %v %v", resp, err)
	}
	// etcd's candidate now waits behind beacon's leader.
	done := make(chan error, 1)
	go func() { done <- theirs.Campaign(ctx, "etcd-again") }()
	waitCandidates(t, cli, e, 2)
	select {
	case err := <-done:
		t.Fatalf("concurrency.Election won while beacon leads: %v", err)
	default:
	}
	if _, err := e.Resign(ctx, r.l); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestValidateName(t *testing.T) {
	for _, bad := range []string{"", "a/b", "/", "x\n", strings.Repeat("n", election.MaxNameBytes+1), "\xff"} {
		err := election.ValidateName(bad)
		var fe *election.FieldError
		if !errors.As(err, &fe) || fe.Field != "name" {
			t.Errorf("ValidateName(%q) = %v, want a FieldError on name", bad, err)
		}
	}
	for _, good := range []string{"scheduler", "web-1.leader", "ü"} {
		if err := election.ValidateName(good); err != nil {
			t.Errorf("ValidateName(%q) = %v", good, err)
		}
	}
}
