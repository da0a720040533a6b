package client

import (
	"context"

	"github.com/beaconhq/beacon/api/beaconpb"
)

// Register registers an instance that lives as long as this client: it is
// held by the client's automatic session, opened on first use, so the
// instance disappears from every agent's answers as soon as the process
// exits or crashes.
func (c *Client) Register(ctx context.Context, in *beaconpb.Instance, check *beaconpb.Check) (*beaconpb.Instance, error) {
	s, err := c.autoSession(ctx)
	if err != nil {
		return nil, err
	}
	resp, err := c.Registry.Register(ctx, &beaconpb.RegisterRequest{Instance: in, Check: check, SessionId: s.ID})
	if err != nil {
		return nil, err
	}
	return resp.Instance, nil
}

// Deregister removes an instance registered on this agent.
func (c *Client) Deregister(ctx context.Context, service, id string) error {
	_, err := c.Registry.Deregister(ctx, &beaconpb.DeregisterRequest{Service: service, Id: id})
	return err
}

// autoSession returns the client's session, opening a new one if there is
// none or the last one broke.
func (c *Client) autoSession(ctx context.Context) (*Session, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.session != nil {
		select {
		case <-c.session.Done():
		default:
			return c.session, nil
		}
	}
	s, err := c.NewSession(ctx, WithName("client"))
	if err != nil {
		return nil, err
	}
	c.session = s
	return s, nil
}
