package client

import (
	"context"
	"time"

	"github.com/beaconhq/beacon/api/beaconpb"
)

// maxDeadIDs is how many ids the agent takes in one Redrive or PurgeDead.
const maxDeadIDs = 1000

// HandleDead redrives dead letters of queue back into it, or with purge
// deletes them: those with ids, or every one with all. The agent handles
// at most 1000 a call; HandleDead calls it as often as it takes, each call
// bounded by perCall (0: by ctx alone). It returns what the calls
// answered together: on an error, what was done before it.
func (c *Client) HandleDead(ctx context.Context, queue string, purge bool, ids []string, all bool, perCall time.Duration) (*beaconpb.QueueDeadResponse, error) {
	q := beaconpb.NewQueueClient(c.conn)
	call := q.Redrive
	if purge {
		call = q.PurgeDead
	}
	total := &beaconpb.QueueDeadResponse{}
	for first := true; first || len(ids) > 0; first = false {
		batch := ids[:min(len(ids), maxDeadIDs)]
		ids = ids[len(batch):]
		for {
			cctx, cancel := ctx, context.CancelFunc(func() {})
			if perCall > 0 {
				cctx, cancel = context.WithTimeout(ctx, perCall)
			}
			resp, err := call(cctx, &beaconpb.QueueDeadRequest{Queue: queue, Ids: batch, All: all})
			cancel()
			if err != nil {
				return total, err
			}
			total.Done = append(total.Done, resp.Done...)
			total.NotDead = append(total.NotDead, resp.NotDead...)
			// With all, more remain; none done means what is left cannot be.
			if !resp.More || len(resp.Done) == 0 {
				break
			}
		}
	}
	return total, nil
}
