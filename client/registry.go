package client

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/beaconhq/beacon/api/beaconpb"
	"google.golang.org/protobuf/proto"
)

// ErrClientClosed is returned by calls that need the automatic session
// after Close.
var ErrClientClosed = errors.New("client closed")

// autoOpenTimeout bounds one opening of the automatic session.
const autoOpenTimeout = 10 * time.Second

// Register registers an instance that lives as long as this client: it is
// held by the client's automatic session, opened on first use, so the
// instance disappears from every agent's answers as soon as the process
// exits or crashes. If that session breaks (the agent restarted, say),
// one new session replaces it and takes over every registration.
func (c *Client) Register(ctx context.Context, in *beaconpb.Instance, check *beaconpb.Check) (*beaconpb.Instance, error) {
	var lastErr error
	for range 3 { // a session that breaks under every attempt: give up
		s, err := c.autoSession(ctx)
		if err != nil {
			return nil, err
		}
		resp, err := c.Registry.Register(ctx, &beaconpb.RegisterRequest{Instance: in, Check: check, SessionId: s.ID})
		if err != nil {
			if ended(s) && ctx.Err() == nil {
				lastErr = err
				continue // the session broke under the call: again, in its successor
			}
			return nil, err
		}
		c.mu.Lock()
		c.regs[resp.Instance.Service+"/"+resp.Instance.Id] = &register{in: resp.Instance, check: check}
		replaced := c.session != s
		c.mu.Unlock()
		// Recorded before s was replaced, the registration is replayed
		// into its successor with the rest; after, the successor's replay
		// may have passed already: register it there too.
		if !replaced {
			return resp.Instance, nil
		}
		lastErr = fmt.Errorf("the session broke while registering %s/%s", resp.Instance.Service, resp.Instance.Id)
	}
	return nil, lastErr
}

// Deregister removes an instance registered on this agent: one this
// client registered (in its session), or an agent-owned one. The agent
// refuses anything else (PermissionDenied).
func (c *Client) Deregister(ctx context.Context, service, id string) error {
	c.mu.Lock()
	k, sessionID := c.ownerLocked(service, id)
	delete(c.regs, k)
	c.mu.Unlock()
	_, err := c.Registry.Deregister(ctx, &beaconpb.DeregisterRequest{Service: service, Id: id, SessionId: sessionID})
	return err
}

// Heartbeat reports the status (pass, warn or fail) of an instance's TTL
// check: one this client registered (in its session), an agent-owned one
// or a config file's.
func (c *Client) Heartbeat(ctx context.Context, service, id, status, output string) error {
	c.mu.Lock()
	_, sessionID := c.ownerLocked(service, id)
	c.mu.Unlock()
	_, err := c.Registry.Heartbeat(ctx, &beaconpb.HeartbeatRequest{Service: service, Id: id, Status: status, Output: output, SessionId: sessionID})
	return err
}

// ownerLocked finds an instance this client registered (service may be
// empty when the id is unambiguous) and returns its key in c.regs and the
// session that holds it; none for an instance of another owner, which the
// agent checks. The caller holds c.mu.
func (c *Client) ownerLocked(service, id string) (key, sessionID string) {
	service, id = strings.ToLower(service), strings.ToLower(id)
	key = service + "/" + id
	if service == "" {
		for k, r := range c.regs {
			if r.in.Id == id {
				key = k
			}
		}
	}
	if c.regs[key] != nil && c.session != nil && !ended(c.session) {
		sessionID = c.session.ID
	}
	return key, sessionID
}

// opening is an opening of a client's automatic session in flight.
type opening struct {
	done chan struct{} // closed when it is over
	err  error         // why it failed; set before done is closed
}

func ended(s *Session) bool {
	select {
	case <-s.Done():
		return true
	default:
		return false
	}
}

// autoSession returns the client's automatic session, opening one if there
// is none or the last one broke; callers that find it so at the same time
// wait for the same opening. No lock is held while it is opened.
func (c *Client) autoSession(ctx context.Context) (*Session, error) {
	for range 3 { // a new session that broke at once gets another chance
		s, op, err := c.sessionOrOpening()
		if s != nil || err != nil {
			return s, err
		}
		select {
		case <-op.done:
			if op.err != nil {
				return nil, op.err
			}
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return nil, errors.New("the agent's sessions broke as soon as they opened")
}

// sessionOrOpening returns the live automatic session, or else the
// opening of its successor, started now if none is in flight.
func (c *Client) sessionOrOpening() (*Session, *opening, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, nil, ErrClientClosed
	}
	if s := c.session; s != nil && !ended(s) {
		return s, nil, nil
	}
	if c.opening != nil {
		return nil, c.opening, nil
	}
	op := &opening{done: make(chan struct{})}
	c.opening = op
	go c.open(op)
	return nil, op, nil
}

// open opens the automatic session and installs it; its keeper then
// replays the registrations into it.
func (c *Client) open(op *opening) {
	ctx, cancel := context.WithTimeout(context.Background(), autoOpenTimeout)
	defer cancel()
	s, err := c.NewSession(ctx, WithName("client"))
	c.mu.Lock()
	c.opening = nil
	if err == nil && c.closed {
		err = ErrClientClosed
	} else if err == nil {
		c.session = s
	}
	op.err = err
	close(op.done)
	c.mu.Unlock()
	if err != nil {
		if s != nil {
			_ = s.Close()
		}
		return
	}
	go c.keepRegistered(s)
}

// keepRegistered keeps what Register registered in the automatic session
// s: it replays it into s, then waits for s to break while the client is
// still open, and has it replaced (unless a Register did already).
func (c *Client) keepRegistered(s *Session) {
	backoff := 100 * time.Millisecond
	sleep := func() {
		time.Sleep(backoff)
		if backoff < 5*time.Second {
			backoff *= 2
		}
	}
	for !c.replay(s) {
		// The broken session's registrations may not be released yet.
		sleep()
	}
	<-s.Done()
	backoff = 100 * time.Millisecond
	for {
		cur, op, err := c.sessionOrOpening()
		if err != nil || cur != nil {
			return // closed, or replaced already
		}
		<-op.done
		if op.err == nil {
			return // the new session's keeper takes over
		}
		sleep()
	}
}

// replay registers into s what Register registered, and reports whether
// all of it is there, or s no longer needs it (it ended, was replaced, or
// the client was closed).
func (c *Client) replay(s *Session) bool {
	c.mu.Lock()
	regs := make(map[string]*register, len(c.regs))
	for k, r := range c.regs {
		regs[k] = r
	}
	c.mu.Unlock()
	for k, r := range regs {
		c.mu.Lock()
		stale := c.closed || c.session != s
		current := c.regs[k] == r
		c.mu.Unlock()
		if stale || ended(s) {
			return true
		}
		if !current {
			continue // deregistered or registered anew meanwhile
		}
		ctx, cancel := context.WithTimeout(context.Background(), autoOpenTimeout)
		_, err := c.Registry.Register(ctx, &beaconpb.RegisterRequest{Instance: r.in, Check: r.check, SessionId: s.ID})
		if err == nil {
			c.mu.Lock()
			gone := c.regs[k] == nil
			c.mu.Unlock()
			if gone { // a Deregister crossed the replay: it stays deregistered
				_, _ = c.Registry.Deregister(ctx, &beaconpb.DeregisterRequest{Service: r.in.Service, Id: r.in.Id, SessionId: s.ID})
			}
		}
		cancel()
		if err != nil {
			return false
		}
	}
	return true
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
