package election_test

import (
	"strings"
	"testing"

	"github.com/beaconhq/beacon/api/beaconpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
)

// Only the leading session proclaims or resigns: not a call without a
// session, not another session naming the leader's rev, not an unknown
// session id (which no message repeats). The leadership stands after each.
func TestProclaimResignOnlyByLeader(t *testing.T) {
	cli, c, ec := serve(t)
	ctx := ctxT(t)
	a, b := openSession(t, c), openSession(t, c)
	won, err := ec.Campaign(ctx, &beaconpb.ElectionCampaignRequest{Name: "own", SessionId: a.ID, Proposal: "a"})
	if err != nil {
		t.Fatal(err)
	}
	rev := won.Leader.Rev
	const unknown = "00112233445566778899aabbccddeeff"
	_, err = ec.Resign(ctx, &beaconpb.ElectionResignRequest{Name: "own", Rev: rev})
	wantCode(t, err, codes.PermissionDenied, "session_id")
	_, err = ec.Resign(ctx, &beaconpb.ElectionResignRequest{Name: "own", SessionId: b.ID, Rev: rev})
	wantCode(t, err, codes.PermissionDenied, "another session")
	_, err = ec.Proclaim(ctx, &beaconpb.ElectionProclaimRequest{Name: "own", Rev: rev, Proposal: "x"})
	wantCode(t, err, codes.PermissionDenied, "session_id")
	_, err = ec.Proclaim(ctx, &beaconpb.ElectionProclaimRequest{Name: "own", SessionId: b.ID, Rev: rev, Proposal: "x"})
	wantCode(t, err, codes.PermissionDenied, "another session")
	_, err = ec.Resign(ctx, &beaconpb.ElectionResignRequest{Name: "own", SessionId: unknown, Rev: rev})
	wantCode(t, err, codes.NotFound, "session_id")
	if strings.Contains(err.Error(), unknown) {
		t.Errorf("the error repeats the session id: %v", err)
	}

	lead, err := ec.Leader(ctx, &beaconpb.ElectionLeaderRequest{Name: "own"})
	if err != nil || lead.Leader.Rev != rev || lead.Leader.Proposal != "a" {
		t.Fatalf("after the refused calls the leader is %v %v; want rev %d proposal a", lead, err, rev)
	}
	if strings.Contains(lead.String(), a.ID) {
		t.Errorf("Leader answered the leader's session id: %v", lead)
	}
	resp, err := cli.Get(ctx, "/beacon/elections/own/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range resp.Kvs {
		if strings.Contains(string(kv.Value), a.ID) {
			t.Errorf("etcd holds the session id at %s", kv.Key)
		}
	}
	if _, err := ec.Proclaim(ctx, &beaconpb.ElectionProclaimRequest{Name: "own", SessionId: a.ID, Rev: rev, Proposal: "a2"}); err != nil {
		t.Fatalf("proclaim by the leader: %v", err)
	}
	r, err := ec.Resign(ctx, &beaconpb.ElectionResignRequest{Name: "own", SessionId: a.ID, Rev: rev})
	if err != nil || !r.Resigned {
		t.Fatalf("resign by the leader: %v %v", r, err)
	}
	// An ended leadership is no one's: resigning it again is not refused.
	r, err = ec.Resign(ctx, &beaconpb.ElectionResignRequest{Name: "own", SessionId: b.ID, Rev: rev})
	if err != nil || r.Resigned {
		t.Fatalf("resign of an ended leadership: %v %v", r, err)
	}
}
