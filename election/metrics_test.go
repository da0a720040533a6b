package election_test

import (
	"testing"
	"time"

	"github.com/beaconhq/beacon/api/beaconpb"
	"github.com/beaconhq/beacon/election"
	mt "github.com/beaconhq/beacon/internal/metricstest"
	"github.com/beaconhq/beacon/session"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// beacon_elections_led counts the elections a session of this agent
// leads: up with each win, down with a resignation and with the end of
// the leading session; a candidate still waiting is no leader.
func TestElectionsLed(t *testing.T) {
	cli := startEtcd(t)
	m := session.NewManager(cli)
	t.Cleanup(func() { m.CloseAll(0) })
	s := election.NewService(cli, m, "/beacon/")
	c := s.Metrics()
	ctx := ctxT(t)
	open := func() *session.Session {
		sess, err := m.Open(ctx, "test", 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		return sess
	}
	a, b := open(), open()
	ra, err := s.Campaign(ctx, &beaconpb.ElectionCampaignRequest{Name: "e1", SessionId: a.ID, Proposal: "a"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Campaign(ctx, &beaconpb.ElectionCampaignRequest{Name: "e2", SessionId: b.ID, Proposal: "b"}); err != nil {
		t.Fatal(err)
	}
	mt.Wait(t, c, 10*time.Second, "beacon_elections_led", mt.Is(2))

	// b campaigns in e1 too, behind a: not a leader yet.
	won := make(chan error, 1)
	go func() {
		_, err := s.Campaign(ctx, &beaconpb.ElectionCampaignRequest{Name: "e1", SessionId: b.ID, Proposal: "b"})
		won <- err
	}()
	deadline := time.Now().Add(10 * time.Second)
	for { // b's proposal is in etcd: it is waiting behind a
		resp, err := cli.Get(ctx, "/beacon/elections/e1/", clientv3.WithPrefix(), clientv3.WithCountOnly())
		if err == nil && resp.Count == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("b's candidacy not in etcd after 10s: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if v := mt.Value(t, c, "beacon_elections_led"); v != 2 {
		t.Fatalf("beacon_elections_led = %v with a candidate waiting, want 2", v)
	}
	if _, err := s.Resign(ctx, &beaconpb.ElectionResignRequest{Name: "e1", SessionId: a.ID, Rev: ra.Leader.Rev}); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-won:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("b did not take e1 within 20s of a's resignation")
	}
	mt.Wait(t, c, 10*time.Second, "beacon_elections_led", mt.Is(2)) // b leads e1 and e2
	b.Close()
	mt.Wait(t, c, 10*time.Second, "beacon_elections_led", mt.Is(0))
}
