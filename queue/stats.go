package queue

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Stats counts the queue's messages in one read at one revision; with
// WithInFlight it also lists the in-flight ones (inflight.go).
func (b *Broker) Stats(ctx context.Context, queue string, opts ...StatsOption) (Stats, error) {
	if err := ValidateName(queue); err != nil {
		return Stats{}, err
	}
	var o statsOpts
	for _, f := range opts {
		f(&o)
	}
	k := b.keys(queue)
	start, end := k.viewRange()
	ops := []clientv3.Op{
		clientv3.OpGet(start, clientv3.WithRange(end)),
		clientv3.OpGet(k.deadPrefix(), clientv3.WithPrefix(), clientv3.WithCountOnly()),
		clientv3.OpGet(k.gate()),
	}
	resp, err := b.cli.Txn(ctx).Then(ops...).Commit()
	if err != nil {
		return Stats{}, err
	}
	gate := gateOfKV(resp.Responses[2].GetResponseRange().Kvs)
	now := time.Now().UnixNano()
	s := Stats{Queue: queue, Revision: resp.Header.Revision, Dead: int(resp.Responses[1].GetResponseRange().Count), Gate: gate}
	msgs := map[uint64]meta{}
	active := map[uint64]bool{} // reservations with their deadline ahead
	var listing inFlightListing
	var oldest int64
	for _, kv := range resp.Responses[0].GetResponseRange().Kvs {
		seq, ok := seqOf(kv.Key)
		if !ok {
			continue
		}
		if bytes.HasPrefix(kv.Key, []byte(k.msgPrefix())) {
			if m, err := decodeMeta(kv.Value); err == nil {
				msgs[seq] = m
				if oldest == 0 || m.Enqueued < oldest {
					oldest = m.Enqueued
				}
			}
		} else if r, err := decodeReservation(kv.Value); err == nil && r.Deadline > now {
			active[seq] = true
			if o.inFlight {
				listing.add(seq, r, kv.CreateRevision)
			}
		}
	}
	if o.inFlight {
		listed, more := listing.listed(msgs)
		reports, err := b.readReports(ctx, k, listed, resp.Header.Revision)
		if err != nil {
			return Stats{}, err
		}
		s.InFlightMessages, s.InFlightMore = finish(listed, msgs, reports), more
	}
	for seq, m := range msgs {
		switch {
		case active[seq]:
			s.InFlight++
		case m.NotBefore > now:
			s.Delayed++
		default:
			s.Ready++
		}
	}
	s.Depth = len(msgs)
	if oldest != 0 {
		s.OldestAge = max(0, time.Duration(now-oldest))
	}
	return s, nil
}

// DeadLetters lists up to limit dead letters, oldest first, with their
// payloads, and whether there are more.
func (b *Broker) DeadLetters(ctx context.Context, queue string, limit int) ([]Message, bool, error) {
	if err := ValidateName(queue); err != nil {
		return nil, false, err
	}
	if limit < 1 || limit > 1000 {
		return nil, false, &FieldError{Field: "limit", Msg: fmt.Sprintf("%d is not from 1 to 1000", limit)}
	}
	k := b.keys(queue)
	resp, err := b.cli.Get(ctx, k.deadPrefix(), clientv3.WithPrefix(), clientv3.WithLimit(int64(limit)))
	if err != nil {
		return nil, false, err
	}
	out := make([]Message, 0, len(resp.Kvs))
	var gets []clientv3.Op
	for _, kv := range resp.Kvs {
		seq, ok := seqOf(kv.Key)
		if !ok {
			continue
		}
		var d deadRecord
		if err := json.Unmarshal(kv.Value, &d); err != nil {
			// Listed all the same, so that Stats and this agree and an
			// operator sees it: Redrive refuses it, PurgeDead removes it.
			d = deadRecord{Reason: "unreadable dead-letter record: purge it"}
		}
		out = append(out, Message{Queue: queue, ID: strconv.FormatUint(seq, 10), Enqueued: unixTime(d.Enqueued),
			Deliveries: int(d.Deliveries), DedupID: d.Dedup, DeadAt: unixTime(d.Died), DeadReason: d.Reason})
		gets = append(gets, clientv3.OpGet(k.body(seq)))
	}
	// The bodies, 100 to a transaction (etcd's limit is 128 ops).
	for i := 0; i < len(gets); i += 100 {
		j := min(i+100, len(gets))
		bodies, err := b.cli.Txn(ctx).Then(gets[i:j]...).Commit()
		if err != nil {
			return nil, false, err
		}
		for n, r := range bodies.Responses {
			if kvs := r.GetResponseRange().Kvs; len(kvs) > 0 {
				out[i+n].Payload = kvs[0].Value
			}
		}
	}
	return out, resp.More, nil
}

// Wait returns once the queue holds at least count messages (ready,
// reserved or delayed), with how many it held. It waits on the queue's
// watch.
func (b *Broker) Wait(ctx context.Context, queue string, count int) (int, error) {
	if err := ValidateName(queue); err != nil {
		return 0, err
	}
	if count < 1 {
		return 0, &FieldError{Field: "count", Msg: fmt.Sprintf("%d is not at least 1", count)}
	}
	v, err := b.acquire(queue)
	if err != nil {
		return 0, err
	}
	defer b.release(v)
	if err := v.waitLoaded(ctx); err != nil {
		return 0, err
	}
	for {
		v.mu.Lock()
		n, changed := len(v.msgs), v.changed
		v.mu.Unlock()
		if n >= count {
			return n, nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
}
