package client

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/beaconhq/beacon/api/beaconpb"
	"github.com/beaconhq/beacon/internal/holdclock"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
)

// Reservation is a queue message reserved in a session, held like a lock
// grant. Besides its lease, its visibility deadline bounds it: the
// reservation keeps that deadline ahead (Extend every third of the
// visibility, in the background), and is lost if an extension fails or
// does not come in time.
type Reservation struct {
	*Hold
	Message *beaconpb.QueueMessage
	Receipt string

	q          beaconpb.QueueClient
	visibility time.Duration
	sessionID  string // the agent lets only this session touch the reservation
}

// Reserve reserves the oldest ready message of req.Queue in sess (req's
// session_id is set from sess, and its worker_pid, when not given, to
// this process's id), waiting as req says. With nothing ready it answers
// the agent's NotFound.
func (c *Client) Reserve(ctx context.Context, sess *Session, req *beaconpb.QueueReserveRequest) (*Reservation, error) {
	req.SessionId = sess.ID
	if req.WorkerPid == 0 {
		req.WorkerPid = uint32(os.Getpid())
	}
	visibility := 30 * time.Second
	if req.Visibility != nil {
		visibility = req.Visibility.AsDuration()
	}
	q := beaconpb.NewQueueClient(c.conn)
	resp, err := q.Reserve(ctx, req)
	if err != nil {
		return nil, err
	}
	nack := func(ctx context.Context) error {
		_, err := q.Nack(ctx, &beaconpb.QueueNackRequest{Receipt: resp.Receipt, SessionId: sess.ID})
		return err
	}
	if resp.LeaseId == "" {
		_ = nack(ctx)
		return nil, errors.New("the agent did not say which lease holds the reservation (an older agent?)")
	}
	h, err := c.holdOf(ctx, sess, resp.LeaseId, resp.Receipt, 0, nack)
	if err != nil {
		return nil, fmt.Errorf("queue %q: %w", req.Queue, err)
	}
	// The visibility ran from when the agent reserved, somewhere in the
	// wait; this process knows only when it asked. One extension, asked
	// now, gives a deadline this process can measure.
	asked := holdclock.Now()
	if _, err := q.Extend(ctx, &beaconpb.QueueExtendRequest{Receipt: resp.Receipt, Visibility: durationpb.New(visibility), SessionId: sess.ID}); err != nil {
		return nil, fmt.Errorf("queue %q: the reservation could not be confirmed: %w", req.Queue, h.giveUp(ctx, err))
	}
	h.limit(asked, visibility)
	r := &Reservation{Hold: h, Message: resp.Message, Receipt: resp.Receipt, q: q, visibility: visibility, sessionID: sess.ID}
	go h.watchOwn()
	go r.keepExtended()
	return r, nil
}

// keepExtended extends the visibility every third of it while the
// reservation holds; a failed extension loses it.
func (r *Reservation) keepExtended() {
	every := max(r.visibility/3, 5*time.Millisecond)
	t := time.NewTicker(every)
	defer t.Stop()
	held, cancelHeld := r.context() // every call ends with the hold
	defer cancelHeld()
	for {
		select {
		case <-r.Lost():
			return
		case <-t.C:
		}
		asked := holdclock.Now()
		ctx, cancel := context.WithTimeout(held, r.visibility)
		_, err := r.q.Extend(ctx, &beaconpb.QueueExtendRequest{Receipt: r.Receipt, Visibility: durationpb.New(r.visibility), SessionId: r.sessionID})
		cancel()
		switch {
		case err == nil:
			r.limit(asked, r.visibility)
		case status.Code(err) == codes.FailedPrecondition:
			r.lose(fmt.Errorf("the reservation ended: %s", status.Convert(err).Message()))
			return
		}
		// Other errors (the agent unreachable): the deadline runs on, and
		// the next tick tries again.
	}
}

// Ack removes the message for good; the reservation ends with it. It
// fails with FailedPrecondition if the reservation was lost and the
// message taken by another consumer.
func (r *Reservation) Ack(ctx context.Context) error {
	r.end(ErrReleased)
	_, err := r.q.Ack(ctx, &beaconpb.QueueAckRequest{Receipt: r.Receipt, SessionId: r.sessionID})
	return err
}

// Nack ends the reservation and puts the message back, ready after delay.
func (r *Reservation) Nack(ctx context.Context, delay time.Duration) error {
	r.end(ErrReleased)
	_, err := r.q.Nack(ctx, &beaconpb.QueueNackRequest{Receipt: r.Receipt, Delay: durationpb.New(delay), SessionId: r.sessionID})
	return err
}
