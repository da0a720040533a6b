package queue

import (
	"context"
	"errors"
	"fmt"
	"github.com/beaconhq/beacon/dataquota"
	"time"

	"github.com/beaconhq/beacon/internal/rpcerr"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// holds is the comparison every receipt operation makes: the reservation
// key still exists with the create revision the receipt names. A
// reservation that ended (session gone, nacked, reaped after its deadline)
// and was made again has a newer create revision, so an old receipt fails.
func holds(k keys, r Receipt) clientv3.Cmp {
	return clientv3.Compare(clientv3.CreateRevision(k.res(r.Seq)), "=", r.Rev)
}

// ackOps remove an acked message, and open the queue's gate if it was
// waiting for this ack (ackOpens).
func ackOps(k keys, seq uint64) []clientv3.Op {
	return []clientv3.Op{clientv3.OpDelete(k.msg(seq)), clientv3.OpDelete(k.body(seq)), clientv3.OpDelete(k.res(seq)),
		clientv3.OpDelete(k.status(seq)), ackOpens(k, seq)}
}

// refused adds what was asked to a claim's refusal.
func refused(err error, what string, r Receipt) error {
	for _, base := range []*rpcerr.Named{ErrStaleReceipt, ErrNotYours} {
		if errors.Is(err, base) {
			return fmt.Errorf("%s %s: %w", what, r.name(), base)
		}
	}
	return err
}

// Ack removes the reserved message for good, in one transaction that
// holds only if the receipt's reservation does; otherwise ErrStaleReceipt
// (also for a receipt whose key is not the reservation's). With
// InSession, the reservation must be that session's (ErrNotYours). An ack
// after the visibility deadline still succeeds if nobody has taken the
// message since.
func (b *Broker) Ack(ctx context.Context, r Receipt, opts ...CallOption) error {
	if err := ValidateName(r.Queue); err != nil {
		return err
	}
	k := b.keys(r.Queue)
	if err := b.claim(ctx, k, r, callerOf(opts)); err != nil {
		return refused(err, "ack", r)
	}
	// An ack makes room: the data quota passes it however full etcd is.
	resp, err := b.cli.Txn(dataquota.Freeing(ctx)).If(holds(k, r)).Then(ackOps(k, r.Seq)...).Commit()
	if err != nil {
		return err
	}
	if !resp.Succeeded {
		return fmt.Errorf("ack %s: %w", r.name(), ErrStaleReceipt)
	}
	return nil
}

// Nack ends the reservation and leaves the message at its place in the
// queue, ready again after delay. Receipts and sessions are checked as
// for Ack.
func (b *Broker) Nack(ctx context.Context, r Receipt, delay time.Duration, opts ...CallOption) error {
	if err := ValidateName(r.Queue); err != nil {
		return err
	}
	if err := validateDuration("delay", delay, 0); err != nil {
		return err
	}
	k := b.keys(r.Queue)
	if err := b.claim(ctx, k, r, callerOf(opts)); err != nil {
		return refused(err, "nack", r)
	}
	ops := []clientv3.Op{clientv3.OpDelete(k.res(r.Seq)), clientv3.OpDelete(k.status(r.Seq))}
	cmps := []clientv3.Cmp{holds(k, r)}
	if delay > 0 {
		// The message's metadata cannot change while the reservation
		// holds (only a reserve or a burial writes it, and both need the
		// reservation gone), so read, then write under the same compare.
		got, err := b.cli.Get(ctx, k.msg(r.Seq))
		if err != nil {
			return err
		}
		if len(got.Kvs) == 0 {
			return fmt.Errorf("nack %s: %w", r.name(), ErrStaleReceipt)
		}
		m, err := decodeMeta(got.Kvs[0].Value)
		if err != nil {
			return err
		}
		m.NotBefore = time.Now().Add(delay).UnixNano()
		cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(k.msg(r.Seq)), "=", got.Kvs[0].ModRevision))
		ops = append(ops, clientv3.OpPut(k.msg(r.Seq), encode(m)))
	}
	resp, err := b.cli.Txn(ctx).If(cmps...).Then(ops...).Commit()
	if err != nil {
		return err
	}
	if !resp.Succeeded {
		return fmt.Errorf("nack %s: %w", r.name(), ErrStaleReceipt)
	}
	b.wrote(r.Queue, resp.Header.Revision)
	return nil
}

// Extend moves the reservation's deadline to now + visibility, keeping its
// lease and its receipt, and returns the new deadline. Receipts and
// sessions are checked as for Ack.
func (b *Broker) Extend(ctx context.Context, r Receipt, visibility time.Duration, opts ...CallOption) (time.Time, error) {
	if err := ValidateName(r.Queue); err != nil {
		return time.Time{}, err
	}
	if err := validateDuration("visibility", visibility, time.Millisecond); err != nil {
		return time.Time{}, err
	}
	k := b.keys(r.Queue)
	c := callerOf(opts)
	got, err := b.cli.Get(ctx, k.res(r.Seq))
	for err == nil {
		if len(got.Kvs) == 0 {
			return time.Time{}, fmt.Errorf("extend %s: %w", r.name(), ErrStaleReceipt)
		}
		kv := got.Kvs[0]
		res, derr := decodeReservation(kv.Value)
		if derr != nil {
			res = reservation{} // unreadable: no receipt matches it
		}
		rr := resRecord{found: true, create: kv.CreateRevision, lease: clientv3.LeaseID(kv.Lease), rec: res}
		if err := rr.allows(r, c); err != nil {
			return time.Time{}, refused(err, "extend", r)
		}
		res.Deadline = time.Now().Add(visibility).UnixNano()
		var resp *clientv3.TxnResponse
		resp, err = b.cli.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(string(kv.Key)), "=", kv.ModRevision)).
			Then(clientv3.OpPut(string(kv.Key), encode(res), clientv3.WithIgnoreLease())).
			Else(clientv3.OpGet(string(kv.Key))).Commit()
		if err == nil && resp.Succeeded {
			return unixTime(res.Deadline), nil
		}
		if err == nil { // changed meanwhile (another extend, or reaped): look again
			got = (*clientv3.GetResponse)(resp.Responses[0].GetResponseRange())
		}
	}
	return time.Time{}, err
}
