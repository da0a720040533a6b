package queue

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Dead letters are for an operator to look at, then either send back to
// their queue, once whatever made them fail is fixed, or throw away.
//
// Redrive puts a dead letter back as a ready message under its own
// sequence number, so it is first in line again, with its delivery count
// reset: `If(mod_revision(dead) = seen, version(msg) = 0) Then(delete
// dead, put msg)`. Its payload never moved (body/<seq>). Purge deletes a
// dead letter and its payload: `If(mod_revision(dead) = seen) Then(delete
// dead, delete body)`. Each letter is one transaction comparing what was
// read, so a letter redriven and purged at once by two operators ends up
// one way, whole.

// DeadAction is what becomes of dead letters.
type DeadAction int

const (
	// Redrive sends them back to their queue, ready, deliveries reset.
	Redrive DeadAction = iota
	// Purge deletes them and their payloads.
	Purge
)

// MaxDeadBatch is the most dead letters one HandleDead call handles: the
// ids it takes, and the letters "all" handles before it returns with more
// set. Each letter is a transaction; a bound keeps a call within a
// client's timeout and its answer small.
const MaxDeadBatch = 1000

// HandleDead redrives or purges dead letters of queue: those with the
// given ids, or, with all, the oldest MaxDeadBatch (more says whether
// others remain: call again). It returns the ids it handled, and the
// given ids that were no dead letter (unknown, handled meanwhile by
// someone else, or, for Redrive, a record too damaged to redrive: purge
// it). Ids are answered in canonical form, each once.
func (b *Broker) HandleDead(ctx context.Context, queue string, action DeadAction, ids []string, all bool) (done, notDead []string, more bool, err error) {
	if err := ValidateName(queue); err != nil {
		return nil, nil, false, err
	}
	switch {
	case action != Redrive && action != Purge:
		return nil, nil, false, &FieldError{Field: "action", Msg: fmt.Sprintf("%d is not an action", action)}
	case all && len(ids) > 0:
		return nil, nil, false, &FieldError{Field: "ids", Msg: "give ids or all, not both"}
	case !all && len(ids) == 0:
		return nil, nil, false, &FieldError{Field: "ids", Msg: "none given (or ask for all)"}
	case len(ids) > MaxDeadBatch:
		return nil, nil, false, &FieldError{Field: "ids", Msg: fmt.Sprintf("%d given; at most %d a call", len(ids), MaxDeadBatch)}
	}
	var seqs []uint64
	for _, id := range ids {
		seq, err := strconv.ParseUint(id, 10, 64)
		if err != nil || seq == 0 {
			return nil, nil, false, &FieldError{Field: "ids", Msg: fmt.Sprintf("%.40q is not a message id", id)}
		}
		if !slices.Contains(seqs, seq) {
			seqs = append(seqs, seq)
		}
	}
	k := b.keys(queue)
	if !all {
		for _, seq := range seqs {
			resp, err := b.cli.Get(ctx, k.dead(seq))
			if err != nil {
				return done, notDead, false, err
			}
			ok := false
			if len(resp.Kvs) > 0 {
				if ok, err = b.handleOne(ctx, k, action, seq, resp.Kvs[0].Value, resp.Kvs[0].ModRevision); err != nil {
					return done, notDead, false, err
				}
			}
			if ok {
				done = append(done, strconv.FormatUint(seq, 10))
			} else {
				notDead = append(notDead, strconv.FormatUint(seq, 10))
			}
		}
		return done, notDead, false, nil
	}
	// All: the oldest letters, a page at a time. A letter a concurrent
	// call handled first, or one too damaged to redrive, is skipped.
	from := k.deadPrefix()
	end := clientv3.GetPrefixRangeEnd(k.deadPrefix())
	for tried := 0; ; {
		resp, err := b.cli.Get(ctx, from, clientv3.WithRange(end), clientv3.WithLimit(int64(min(MaxDeadBatch-tried, 500))))
		if err != nil {
			return done, nil, false, err
		}
		for _, kv := range resp.Kvs {
			tried++
			seq, ok := seqOf(kv.Key)
			if !ok {
				continue
			}
			ok, err := b.handleOne(ctx, k, action, seq, kv.Value, kv.ModRevision)
			if err != nil {
				return done, nil, false, err
			}
			if ok {
				done = append(done, strconv.FormatUint(seq, 10))
			}
		}
		if !resp.More || len(resp.Kvs) == 0 {
			return done, nil, false, nil
		}
		if tried >= MaxDeadBatch {
			return done, nil, true, nil
		}
		from = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
}

// handleOne redrives or purges one dead letter read at rev; false when it
// was no longer as read.
func (b *Broker) handleOne(ctx context.Context, k keys, action DeadAction, seq uint64, value []byte, rev int64) (bool, error) {
	var d deadRecord
	if err := json.Unmarshal(value, &d); err != nil && action == Redrive {
		return false, nil // its metadata is lost: purge it rather
	}
	same := clientv3.Compare(clientv3.ModRevision(k.dead(seq)), "=", rev)
	var txn clientv3.Txn
	switch action {
	case Redrive:
		m := d.meta
		m.Deliveries, m.NotBefore = 0, 0
		txn = b.cli.Txn(ctx).If(same, clientv3.Compare(clientv3.Version(k.msg(seq)), "=", 0)).
			Then(clientv3.OpDelete(k.dead(seq)), clientv3.OpPut(k.msg(seq), encode(m)))
	case Purge:
		txn = b.cli.Txn(ctx).If(same).Then(clientv3.OpDelete(k.dead(seq)), clientv3.OpDelete(k.body(seq)))
	default:
		return false, fmt.Errorf("queue: dead-letter action %d", action) // HandleDead checked it
	}
	resp, err := txn.Commit()
	if err != nil {
		return false, err
	}
	if resp.Succeeded && action == Redrive {
		b.wrote(k.queue, resp.Header.Revision)
	}
	return resp.Succeeded, nil
}
