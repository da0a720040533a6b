package client

import (
	"context"
	"fmt"
	"time"

	"github.com/beaconhq/beacon/api/beaconpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
)

// CampaignOption configures Campaign.
type CampaignOption func(*beaconpb.ElectionCampaignRequest)

// CampaignTimeout makes the agent give up after d, at most 24h
// (DeadlineExceeded); 0 waits as long as ctx allows.
func CampaignTimeout(d time.Duration) CampaignOption {
	return func(r *beaconpb.ElectionCampaignRequest) { r.Timeout = durationpb.New(d) }
}

// Leadership is a won election, held like a lock grant: Hold's Key is the
// leader key and Token its revision, which Proclaim and fenced writes
// check.
type Leadership struct {
	*Hold
	Leader *beaconpb.ElectionLeader
}

// Campaign waits until sess leads the election name with proposal, and
// returns the leadership as a hold. It is lost when its lease ends, when
// the agent reports the leadership gone, or when its deadline passes on
// this process's clock without a confirmation; Release resigns.
func (c *Client) Campaign(ctx context.Context, sess *Session, name, proposal string, opts ...CampaignOption) (*Leadership, error) {
	req := &beaconpb.ElectionCampaignRequest{Name: name, SessionId: sess.ID, Proposal: proposal}
	for _, o := range opts {
		o(req)
	}
	ec := beaconpb.NewElectionClient(c.conn)
	resp, err := ec.Campaign(ctx, req)
	if err != nil {
		return nil, err
	}
	leader := resp.Leader
	resign := func(ctx context.Context) error {
		_, err := ec.Resign(ctx, &beaconpb.ElectionResignRequest{Name: name, SessionId: sess.ID, Rev: leader.Rev})
		return err
	}
	h, err := c.holdOf(ctx, sess, leader.LeaseId, leader.Key, leader.Rev, resign)
	if err != nil {
		return nil, fmt.Errorf("election %q: %w", name, err)
	}
	wctx, cancel := context.WithCancel(context.Background())
	ws, err := ec.WatchLeadership(wctx, &beaconpb.ElectionWatchLeadershipRequest{Name: name, SessionId: sess.ID, Rev: leader.Rev})
	if err == nil {
		_, err = ws.Recv() // the first event confirms it
	}
	if err != nil {
		cancel()
		return nil, fmt.Errorf("election %q: lost at once: %w", name, h.giveUp(ctx, err))
	}
	h.follow(func() (bool, error) {
		_, err := ws.Recv()
		// FailedPrecondition: the leadership ended in etcd (its key deleted
		// or taken), so another may lead already. Other ends are the
		// agent's: the lease may live on until the deadline.
		if status.Code(err) == codes.FailedPrecondition {
			return true, fmt.Errorf("the agent reported the leadership gone: %s", status.Convert(err).Message())
		}
		return false, fmt.Errorf("the agent can no longer confirm the leadership: %w", err)
	}, cancel)
	return &Leadership{Hold: h, Leader: leader}, nil
}
