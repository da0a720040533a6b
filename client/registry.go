package client

import (
	"context"
	"time"

	"github.com/beaconhq/beacon/api/beaconpb"
	"google.golang.org/protobuf/proto"
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
	c.mu.Lock()
	c.regs[resp.Instance.Service+"/"+resp.Instance.Id] = &register{in: resp.Instance, check: check}
	c.mu.Unlock()
	return resp.Instance, nil
}

// Deregister removes an instance registered on this agent.
func (c *Client) Deregister(ctx context.Context, service, id string) error {
	c.mu.Lock()
	delete(c.regs, service+"/"+id)
	c.mu.Unlock()
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
	go c.keepRegistered(s)
	return s, nil
}

// keepRegistered waits for the automatic session to break (the agent
// restarted, say) while the client is still open, then opens a new one and
// registers again everything Register registered.
func (c *Client) keepRegistered(s *Session) {
	<-s.Done()
	backoff := 100 * time.Millisecond
	for {
		c.mu.Lock()
		if c.closed || c.session != s {
			c.mu.Unlock()
			return
		}
		c.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		ns, err := c.NewSession(ctx, WithName("client"))
		if err == nil {
			err = c.replay(ctx, ns)
			if err != nil {
				_ = ns.Close()
			}
		}
		cancel()
		if err == nil {
			c.mu.Lock()
			if c.closed {
				c.mu.Unlock()
				_ = ns.Close()
				return
			}
			c.session = ns
			c.mu.Unlock()
			go c.keepRegistered(ns)
			return
		}
		time.Sleep(backoff)
		if backoff < 5*time.Second {
			backoff *= 2
		}
	}
}

func (c *Client) replay(ctx context.Context, s *Session) error {
	c.mu.Lock()
	regs := make([]*register, 0, len(c.regs))
	for _, r := range c.regs {
		regs = append(regs, r)
	}
	c.mu.Unlock()
	for _, r := range regs {
		if _, err := c.Registry.Register(ctx, &beaconpb.RegisterRequest{Instance: r.in, Check: r.check, SessionId: s.ID}); err != nil {
			return err
		}
	}
	return nil
}

// listPage is how many instances List asks for at a time: pages of a few
// MB at most, whatever the catalog's size.
const listPage = 5000

// List returns every instance matching req (its Limit and StartAfter
// aside), asking the agent a page at a time, and the catalog revision of
// the last page. Each page reads the catalog as it is then, so a set of
// many pages is not one revision's: an instance added or removed while
// List goes may be missing or still listed, as with etcd's paged ranges.
func (c *Client) List(ctx context.Context, req *beaconpb.ListRequest) ([]*beaconpb.Instance, int64, error) {
	page := proto.Clone(req).(*beaconpb.ListRequest)
	page.Limit, page.StartAfter = listPage, ""
	var all []*beaconpb.Instance
	for {
		resp, err := c.Registry.List(ctx, page)
		if err != nil {
			return nil, 0, err
		}
		all = append(all, resp.Instances...)
		if !resp.More || len(resp.Instances) == 0 {
			return all, resp.Revision, nil
		}
		last := resp.Instances[len(resp.Instances)-1]
		page.StartAfter = last.Service + "/" + last.Id
	}
}
