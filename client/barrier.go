package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"time"

	"github.com/beaconhq/beacon/api/beaconpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
)

// BarrierOption configures Barrier.
type BarrierOption func(*Barrier)

// BarrierTimeout makes the agent give up entering, and waiting for the
// others to leave, after d (DeadlineExceeded, the message naming who is
// missing); without it, both wait as long as ctx allows.
func BarrierTimeout(d time.Duration) BarrierOption {
	return func(b *Barrier) { b.timeout = d }
}

// BarrierProgress calls f with every WAITING event: who is present, as
// they come and go.
func BarrierProgress(f func(*beaconpb.BarrierEnterEvent)) BarrierOption {
	return func(b *Barrier) { b.progress = f }
}

// Barrier is a double barrier of count participants, entered in sess:
// Enter waits until count have entered, the participant works, and
// Leave (then, if wanted, WaitLeft) ends its part.
type Barrier struct {
	c        *Client
	sess     *Session
	name     string
	count    int
	timeout  time.Duration
	progress func(*beaconpb.BarrierEnterEvent)
}

// Barrier returns the barrier name of count participants, for sess.
func (c *Client) Barrier(sess *Session, name string, count int, opts ...BarrierOption) *Barrier {
	b := &Barrier{c: c, sess: sess, name: name, count: count}
	for _, o := range opts {
		o(b)
	}
	return b
}

// BarrierEntry is a participant inside a tripped round, held like a lock
// grant: it is lost when its lease ends, when the agent reports its key
// gone, or when its deadline passes on this process's clock without a
// confirmation. Hold's Key is its key, Token its create revision.
type BarrierEntry struct {
	*Hold
	Round, Cutoff int64
	// Members are the round's members when the trip was seen.
	Members []*beaconpb.BarrierParticipant
	b       *Barrier
}

// timeoutOf is d on the wire: nil (none) when it is not positive.
func timeoutOf(d time.Duration) *durationpb.Duration {
	if d <= 0 {
		return nil
	}
	return durationpb.New(d)
}

// Enter enters the barrier and blocks until count participants are in
// (or ctx ends, or the agent refuses or gives up: see the Barrier
// service). Then the participant is inside until Leave.
func (b *Barrier) Enter(ctx context.Context) (*BarrierEntry, error) {
	if b.count < math.MinInt32 || b.count > math.MaxInt32 {
		// The API carries an int32: a count cut to its low bits would
		// enter another barrier (2^32+1 is 1, which trips at once). The
		// agent judges the rest (from 1 to max-barrier-participants).
		return nil, status.Errorf(codes.InvalidArgument, "barrier %q: count %d is not from 1 to the agent's max-barrier-participants", b.name, b.count)
	}
	bc := beaconpb.NewBarrierClient(b.c.conn)
	// The stream outlives ctx: after the trip it tells of the
	// participation's end, until Leave.
	sctx, cancel := context.WithCancel(context.Background())
	stop := context.AfterFunc(ctx, cancel)
	stream, err := bc.Enter(sctx, &beaconpb.BarrierEnterRequest{Name: b.name, SessionId: b.sess.ID,
		Count: int32(b.count), Timeout: timeoutOf(b.timeout), Pid: int64(os.Getpid())})
	var ev *beaconpb.BarrierEnterEvent
	for err == nil {
		if ev, err = stream.Recv(); err != nil {
			break
		}
		if ev.State == beaconpb.BarrierState_BARRIER_STATE_TRIPPED {
			break
		}
		if b.progress != nil {
			b.progress(ev)
		}
	}
	if !stop() || err != nil {
		cancel()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, err
	}
	release := func(ctx context.Context) error {
		_, err := bc.Leave(ctx, &beaconpb.BarrierLeaveRequest{Name: b.name, SessionId: b.sess.ID, Round: ev.Round, Rev: ev.Rev})
		return err
	}
	h, err := b.c.holdOf(ctx, b.sess, ev.LeaseId, ev.Key, ev.Rev, release)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("barrier %q: %w", b.name, err)
	}
	h.follow(func() (bool, error) {
		_, err := stream.Recv()
		if status.Code(err) == codes.FailedPrecondition {
			// The key is gone from etcd: the others count this one as left.
			return true, fmt.Errorf("the agent reported the participation gone: %s", status.Convert(err).Message())
		}
		if err == nil {
			err = errors.New("an unexpected event")
		}
		return false, fmt.Errorf("the agent can no longer confirm the participation: %w", err)
	}, cancel)
	return &BarrierEntry{Hold: h, Round: ev.Round, Cutoff: ev.Cutoff, Members: ev.Present, b: b}, nil
}

// Leave takes the participant out of the barrier (Release).
func (e *BarrierEntry) Leave(ctx context.Context) error { return e.Release(ctx) }

// WaitLeft blocks until every member of the entry's round has left (a
// member whose lease ended has left), telling remaining (may be nil) who
// is still inside at every change.
func (e *BarrierEntry) WaitLeft(ctx context.Context, remaining func([]*beaconpb.BarrierParticipant)) error {
	stream, err := beaconpb.NewBarrierClient(e.b.c.conn).WaitLeft(ctx, &beaconpb.BarrierWaitLeftRequest{
		Name: e.b.name, Round: e.Round, Cutoff: e.Cutoff, Timeout: timeoutOf(e.b.timeout)})
	if err != nil {
		return err
	}
	for {
		ev, err := stream.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		if remaining != nil {
			remaining(ev.Remaining)
		}
		if len(ev.Remaining) == 0 {
			return nil
		}
	}
}
