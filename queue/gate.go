package queue

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"strconv"

	"github.com/beaconhq/beacon/config"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// gateRecord is the value of a queue's gate key: one condition and
// whether the gate is open. Its encoding has no timestamps, so that the
// closed gate of an --after condition can be compared by value (see
// ackOpens); the gate key's mod revision says when it last changed.
type gateRecord struct {
	Count    int    `json:"count,omitempty"`     // open when this many messages are ready
	After    uint64 `json:"after,omitempty"`     // open when this message is acked
	Key      string `json:"key,omitempty"`       // open when this config key exists…
	Value    []byte `json:"value,omitempty"`     // …holding this value,
	HasValue bool   `json:"has_value,omitempty"` // if HasValue
	Manual   bool   `json:"manual,omitempty"`    // opened by hand only
	Open     bool   `json:"open,omitempty"`
}

// openValueMax is the largest key gate value an open record keeps. An
// opening rewrites the gate's record: with a value of up to a config
// value's 1 MiB (base64 in JSON) each opening would write as much as the
// gate's setting did, on the agent's account, and beside the compare of
// that value the opening's transaction would pass etcd's request limit
// (1.5 MiB), so the gate could never open. Once open, the value no
// longer matters: a larger one is dropped from the record (the gate shows
// its key only).
const openValueMax = 4 << 10

// opened is g, open.
func (g gateRecord) opened() gateRecord {
	g.Open = true
	if len(g.Value) > openValueMax {
		g.Value = nil
	}
	return g
}

func decodeGate(b []byte) (gateRecord, error) {
	var g gateRecord
	err := json.Unmarshal(b, &g)
	return g, err
}

// GateCondition is what opens a gate; set exactly one field (Value goes
// with Key). Open and Close set the gate by hand.
type GateCondition struct {
	Count    int    // open once Count messages are ready (not counting WithLast ones)
	After    string // open once this message (its id) is acked; until then only it is handed out
	Key      string // open once this config key exists, or holds Value when HasValue
	Value    []byte
	HasValue bool
	Open     bool // open now, keeping the condition
	Close    bool // close now; only Open opens it again
}

// Gate is a queue's gate as read from etcd.
type Gate struct {
	Open      bool
	Condition GateCondition // Open and Close unset; Close-by-hand gates have none
	Manual    bool          // closed by hand: only an Open opens it
	Revision  int64         // mod revision of the gate key: when it last changed
}

func (g gateRecord) public(rev int64) *Gate {
	c := GateCondition{Count: g.Count, Key: g.Key, Value: g.Value, HasValue: g.HasValue}
	if g.After != 0 {
		c.After = strconv.FormatUint(g.After, 10)
	}
	return &Gate{Open: g.Open, Condition: c, Manual: g.Manual, Revision: rev}
}

// String says what the gate waits for, for messages.
func (g gateRecord) String() string {
	state := "closed"
	if g.Open {
		state = "open"
	}
	switch {
	case g.Count > 0:
		return fmt.Sprintf("%s, count %d", state, g.Count)
	case g.After != 0:
		return fmt.Sprintf("%s, after message %d", state, g.After)
	case g.Key != "" && g.HasValue:
		return fmt.Sprintf("%s, key %s=%q", state, g.Key, g.Value)
	case g.Key != "":
		return fmt.Sprintf("%s, key %s", state, g.Key)
	}
	return state + " by hand"
}

// SetGate gives the queue a gate, replacing any it had, and returns it.
// A Count, Key or Close gate is written as is; an After gate only while
// its message is in the queue (else ErrNoMessage); Open opens the
// current gate (or makes an open one), keeping its condition.
func (b *Broker) SetGate(ctx context.Context, queue string, c GateCondition) (*Gate, error) {
	if err := ValidateName(queue); err != nil {
		return nil, err
	}
	rec, err := gateOf(c)
	if err != nil {
		return nil, err
	}
	k := b.keys(queue)
	for range 10 {
		var cmps []clientv3.Cmp
		switch {
		case c.Open:
			got, err := b.cli.Get(ctx, k.gate())
			if err != nil {
				return nil, err
			}
			rec = gateRecord{Manual: true}
			var mod int64
			if len(got.Kvs) > 0 {
				mod, rec = got.Kvs[0].ModRevision, readGate(got.Kvs[0].Value)
			}
			rec = rec.opened()
			cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(k.gate()), "=", mod))
		case rec.After != 0:
			cmp, err := b.afterable(ctx, k, rec.After)
			if err != nil {
				return nil, err
			}
			cmps = append(cmps, cmp)
		}
		resp, err := b.cli.Txn(ctx).If(cmps...).Then(clientv3.OpPut(k.gate(), encode(rec))).Commit()
		if err != nil {
			return nil, err
		}
		if resp.Succeeded {
			return rec.public(resp.Header.Revision), nil
		}
		// The gate or the message changed between the read and the write.
	}
	return nil, fmt.Errorf("queue %q: the gate kept changing while it was set: try again", queue)
}

// afterable checks that message seq may be an After gate's: it is in the
// queue and not a WithLast one (which would wait for the messages its gate
// holds back). The compare keeps it so until the gate is written.
func (b *Broker) afterable(ctx context.Context, k keys, seq uint64) (clientv3.Cmp, error) {
	got, err := b.cli.Get(ctx, k.msg(seq))
	if err != nil {
		return clientv3.Cmp{}, err
	}
	if len(got.Kvs) == 0 {
		return clientv3.Cmp{}, fmt.Errorf("queue %q has no message %d (acked, dead, or never pushed): %w", k.queue, seq, ErrNoMessage)
	}
	if m, err := decodeMeta(got.Kvs[0].Value); err == nil && m.Last {
		return clientv3.Cmp{}, &FieldError{Field: "after", Msg: fmt.Sprintf("message %d was pushed with --last, so it runs after every other: it cannot run first", seq)}
	}
	return clientv3.Compare(clientv3.CreateRevision(k.msg(seq)), "=", got.Kvs[0].CreateRevision), nil
}

// gateOf checks a condition and makes its record.
func gateOf(c GateCondition) (gateRecord, error) {
	n := 0
	for _, set := range []bool{c.Count != 0, c.After != "", c.Key != "", c.Open, c.Close} {
		if set {
			n++
		}
	}
	if n != 1 {
		return gateRecord{}, &FieldError{Field: "condition", Msg: "give exactly one of count, after, key, open, close"}
	}
	switch {
	case c.Count != 0:
		if c.Count < 1 || c.Count > math.MaxInt32 {
			return gateRecord{}, &FieldError{Field: "count", Msg: fmt.Sprintf("%d is not from 1 to %d", c.Count, math.MaxInt32)}
		}
		return gateRecord{Count: c.Count}, nil
	case c.After != "":
		seq, err := strconv.ParseUint(c.After, 10, 64)
		if err != nil || seq == 0 {
			return gateRecord{}, &FieldError{Field: "after", Msg: fmt.Sprintf("%.40q is not a message id", c.After)}
		}
		return gateRecord{After: seq}, nil
	case c.Key != "":
		if err := config.ValidateKey("key", c.Key); err != nil {
			return gateRecord{}, err
		}
		if len(c.Value) > config.MaxValueLen {
			return gateRecord{}, &FieldError{Field: "value", Msg: fmt.Sprintf("%d bytes is over a config value's limit of %d", len(c.Value), config.MaxValueLen)}
		}
		return gateRecord{Key: c.Key, Value: c.Value, HasValue: c.HasValue}, nil
	}
	return gateRecord{Manual: true}, nil // Close; Open reads the gate first
}

// GetGate reads the queue's gate; nil when it has none.
func (b *Broker) GetGate(ctx context.Context, queue string) (*Gate, error) {
	if err := ValidateName(queue); err != nil {
		return nil, err
	}
	got, err := b.cli.Get(ctx, b.keys(queue).gate())
	if err != nil {
		return nil, err
	}
	return gateOfKV(got.Kvs), nil
}

func gateOfKV(kvs []*mvccpb.KeyValue) *Gate {
	if len(kvs) == 0 {
		return nil
	}
	return readGate(kvs[0].Value).public(kvs[0].ModRevision)
}

// readGate decodes a gate record; one that does not decode is a gate
// closed by hand, as views take it: closed is the safe side.
func readGate(b []byte) gateRecord {
	g, err := decodeGate(b)
	if err != nil {
		return gateRecord{Manual: true}
	}
	return g
}

// ackOpens is the operation every ack adds to its transaction: if the
// queue's gate is closed waiting for this very message's ack, open it, in
// the same transaction as the ack. The closed record of an After gate is
// one exact value, so the compare needs nothing read before.
func ackOpens(k keys, seq uint64) clientv3.Op {
	closed, open := gateRecord{After: seq}, gateRecord{After: seq, Open: true}
	return clientv3.OpTxn([]clientv3.Cmp{clientv3.Compare(clientv3.Value(k.gate()), "=", encode(closed))},
		[]clientv3.Op{clientv3.OpPut(k.gate(), encode(open))}, nil)
}

// emptyError is ErrEmpty, saying why when the gate is what holds the
// queue back.
func (v *view) emptyError() error {
	v.mu.Lock()
	defer v.mu.Unlock()
	if g := v.gate; g != nil && !g.rec.Open {
		return fmt.Errorf("queue %q: its gate is %s: %w", v.k.queue, g.rec, ErrEmpty)
	}
	return fmt.Errorf("queue %q: %w", v.k.queue, ErrEmpty)
}
