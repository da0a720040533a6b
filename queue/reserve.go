package queue

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// errNewLease: the reservation's lease ended but its session has another.
var errNewLease = errors.New("the session's lease changed")

// ReserveOption configures Reserve.
type ReserveOption func(*reserveOpts)

type reserveOpts struct {
	lease         func() clientv3.LeaseID
	session       bool
	visibility    time.Duration
	wait          time.Duration
	maxDeliveries uint32
	ack           *Receipt
	ackOpts       []CallOption // who acks: the reserving session, or none
	pid           uint32       // the worker's process id, for the record
}

// WithSession binds the reservation to a session's lease: when the lease
// ends (the consumer died, closed its session, or etcd expired it), the
// reservation key goes with it and the message is ready again at once.
// lease is asked at each attempt, since a session may get a new lease
// while Reserve waits (pass a session's Lease method). The session's id
// is not recorded: it is a secret, and the lease names the session.
func WithSession(lease func() clientv3.LeaseID) ReserveOption {
	return func(o *reserveOpts) { o.session, o.lease = true, lease }
}

// WithVisibility sets how long the message stays reserved without an
// ack, nack or extend (default 30s).
func WithVisibility(d time.Duration) ReserveOption { return func(o *reserveOpts) { o.visibility = d } }

// WithWait makes Reserve wait up to d for a message (default: not at all).
func WithWait(d time.Duration) ReserveOption { return func(o *reserveOpts) { o.wait = d } }

// WithMaxDeliveries sets how many deliveries a message gets before it is
// moved to the dead letters instead (default 5). It is per call: the
// consumer that finds a message at the limit moves it.
func WithMaxDeliveries(n int) ReserveOption {
	return func(o *reserveOpts) { o.maxDeliveries = uint32(max(0, min(n, math.MaxInt32))) }
}

// WithAck acks a reservation of the same queue in the transaction that
// makes the new one, so that a consumer loop costs one write per message.
// If nothing is ready, the ack is made at once, before waiting. A stale
// receipt fails the call with ErrStaleReceipt, and nothing is reserved;
// with WithSession, so does a receipt whose reservation is not under that
// session (ErrNotYours).
func WithAck(r Receipt) ReserveOption { return func(o *reserveOpts) { o.ack = &r } }

// Reserve hands out the oldest ready message of the queue. A message is
// ready when it has no reservation key (or only one whose deadline has
// passed) and its not-before time has passed; Reserve takes it with a
// transaction that creates the reservation key only if it is still absent,
// so two consumers never hold one message at once. With nothing ready it
// waits up to the wait option on the queue's watch, then returns ErrEmpty.
func (b *Broker) Reserve(ctx context.Context, queue string, opts ...ReserveOption) (*Delivery, error) {
	o := reserveOpts{visibility: DefaultVisibility, maxDeliveries: DefaultMaxDeliveries,
		lease: func() clientv3.LeaseID { return clientv3.NoLease }}
	for _, f := range opts {
		f(&o)
	}
	if err := validateReserve(queue, &o); err != nil {
		return nil, err
	}
	if o.wait == 0 && o.ack == nil && !b.following(queue) {
		if full, err := b.hasMessages(ctx, b.keys(queue)); err != nil {
			return nil, err
		} else if !full {
			return nil, fmt.Errorf("queue %q: %w", queue, ErrEmpty)
		}
	}
	v, err := b.acquire(queue)
	if err != nil {
		return nil, err
	}
	defer b.release(v)
	if err := v.waitLoaded(ctx); err != nil {
		return nil, err
	}
	if o.ack != nil {
		// The receipt and its owner are checked once: the transaction
		// that acks compares the revision the receipt names.
		c := caller{session: o.session, lease: o.lease()}
		if err := b.claim(ctx, v.k, *o.ack, c); err != nil {
			return nil, refused(err, "ack_receipt", *o.ack)
		}
		o.ackOpts = []CallOption{func(cc *caller) { *cc = c }}
	}
	deadline := time.Now().Add(o.wait)
	checked := false // whether the view was reloaded after the wait ran out
	for {
		now := time.Now()
		v.mu.Lock()
		changed := v.changed
		if v.rev < v.want {
			v.mu.Unlock()
			select {
			case <-changed:
				continue
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		c, found, wake := v.pick(now.UnixNano(), o.maxDeliveries)
		v.mu.Unlock()
		if found && o.ack != nil && c.seq == o.ack.Seq {
			// Our own reservation expired: ack it rather than reap it.
			v.forget(c)
			found = false
		}
		if found {
			d, err := b.try(ctx, v.k, c, &o, now)
			if err != nil {
				v.forget(c) // it may not have happened: others here may try it
			}
			if errors.Is(err, errNewLease) {
				continue // the session got a new lease meanwhile: again, with it
			}
			if d != nil || err != nil {
				return d, err
			}
			continue // lost a race, reaped or buried: pick again
		}
		if o.ack != nil {
			// Nothing to ride on: ack now rather than after the wait.
			if err := b.Ack(ctx, *o.ack, o.ackOpts...); err != nil {
				return nil, err
			}
			o.ack = nil
		}
		if !now.Before(deadline) {
			// The watch may lag the write that made a message ready; a
			// reload at the current revision settles it before answering
			// empty.
			if checked {
				return nil, v.emptyError()
			}
			checked = true
			if _, err := v.reload(ctx); err != nil {
				return nil, err
			}
			if err := v.openNow(ctx); err != nil {
				return nil, err
			}
			continue
		}
		sleep := deadline.Sub(now)
		if wake != 0 {
			sleep = min(sleep, time.Duration(wake-now.UnixNano()))
		}
		t := time.NewTimer(sleep)
		select {
		case <-changed:
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		}
		t.Stop()
	}
}

func validateReserve(queue string, o *reserveOpts) error {
	if err := ValidateName(queue); err != nil {
		return err
	}
	if err := validateDuration("visibility", o.visibility, time.Millisecond); err != nil {
		return err
	}
	if err := validateDuration("wait", o.wait, 0); err != nil {
		return err
	}
	if o.ack != nil && o.ack.Queue != queue {
		return &FieldError{Field: "ack_receipt", Msg: fmt.Sprintf("names queue %q, not %q", o.ack.Queue, queue)}
	}
	if o.maxDeliveries < 1 || o.maxDeliveries > MaxMaxDeliveries {
		return &FieldError{Field: "max_deliveries", Msg: fmt.Sprintf("%d is not from 1 to %d", o.maxDeliveries, MaxMaxDeliveries)}
	}
	return nil
}

// try acts on a candidate with one transaction comparing the revisions the
// view saw. It returns a delivery, or neither delivery nor error when the
// candidate was reaped, buried, or taken by somebody else first.
func (b *Broker) try(ctx context.Context, k keys, c candidate, o *reserveOpts, now time.Time) (*Delivery, error) {
	msgKey, resKey := k.msg(c.seq), k.res(c.seq)
	sameMsg := clientv3.Compare(clientv3.ModRevision(msgKey), "=", c.e.mod)
	noRes := clientv3.Compare(clientv3.Version(resKey), "=", 0)
	// No message leaves the queue under a gate other than the view saw:
	// a gate closed (or a condition changed) since fails the transaction,
	// and the view's next pick knows it.
	sameGate := clientv3.Compare(clientv3.ModRevision(k.gate()), "=", c.gateMod)
	switch c.act {
	case actReap:
		_, err := b.cli.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(resKey), "=", c.res.mod)).
			Then(clientv3.OpDelete(resKey), clientv3.OpDelete(k.status(c.seq))).Commit()
		return nil, err
	case actBury:
		dead := deadRecord{meta: c.e.m, Died: now.UnixNano(),
			Reason: fmt.Sprintf("delivered %d times (max_deliveries %d)", c.e.m.Deliveries, o.maxDeliveries)}
		_, err := b.cli.Txn(ctx).If(sameMsg, noRes, sameGate).
			Then(clientv3.OpDelete(msgKey), clientv3.OpPut(k.dead(c.seq), encode(dead))).Commit()
		return nil, err
	}
	m := c.e.m
	m.Deliveries++
	m.NotBefore = 0
	key := newReceiptKey()
	r := reservation{Deadline: now.Add(o.visibility).UnixNano(), Owner: ownerOf(key), Node: b.node,
		Pid: o.pid, Reserved: now.UnixNano()}
	lease := o.lease()
	cmps := []clientv3.Cmp{sameMsg, noRes, sameGate}
	if c.e.m.Last {
		cmps = append(cmps, lastCmps(k, c.lastRev)...)
	}
	ops := []clientv3.Op{
		clientv3.OpPut(resKey, encode(r), clientv3.WithLease(lease)),
		clientv3.OpPut(msgKey, encode(m)),
		clientv3.OpGet(k.body(c.seq)),
	}
	var orElse []clientv3.Op
	if a := o.ack; a != nil {
		cmps = append(cmps, holds(k, *a))
		ops = append(ops, ackOps(k, a.Seq)...)
		orElse = append(orElse, clientv3.OpGet(k.res(a.Seq)))
	}
	resp, err := b.cli.Txn(ctx).If(cmps...).Then(ops...).Else(orElse...).Commit()
	if err == nil && !resp.Succeeded && o.ack != nil {
		if kvs := resp.Responses[0].GetResponseRange().Kvs; len(kvs) == 0 || kvs[0].CreateRevision != o.ack.Rev {
			return nil, fmt.Errorf("ack_receipt %s: %w", o.ack.name(), ErrStaleReceipt)
		}
	}
	if err == nil && resp.Succeeded {
		o.ack = nil
	}
	switch {
	case err != nil && leaseGone(err) && o.lease() != lease:
		return nil, errNewLease
	case err != nil && leaseGone(err):
		return nil, fmt.Errorf("reserving from queue %q: %w", k.queue, ErrSessionEnded)
	case err != nil:
		return nil, err
	case !resp.Succeeded:
		return nil, nil
	}
	var payload []byte
	if kvs := resp.Responses[2].GetResponseRange().Kvs; len(kvs) > 0 {
		payload = kvs[0].Value
	}
	return &Delivery{
		Message: Message{Queue: k.queue, ID: strconv.FormatUint(c.seq, 10), Payload: payload,
			Enqueued: unixTime(m.Enqueued), Deliveries: int(m.Deliveries), DedupID: m.Dedup, Last: m.Last},
		Receipt:  Receipt{Queue: k.queue, Seq: c.seq, Rev: resp.Header.Revision, Key: key},
		Deadline: unixTime(r.Deadline),
		Lease:    lease,
	}, nil
}
