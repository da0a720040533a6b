package queue

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// meta is the value of msg/<seq>: everything about a message but its
// payload, so that views and stats never read payloads.
type meta struct {
	Enqueued   int64  `json:"enqueued"`             // unix ns
	NotBefore  int64  `json:"not_before,omitempty"` // unix ns; ready from then on
	Deliveries uint32 `json:"deliveries"`           // reservations so far
	Dedup      string `json:"dedup,omitempty"`
	// Last: reserved only once no other message is in the queue (see
	// last.go).
	Last bool `json:"last,omitempty"`
}

// reservation is the value of res/<seq>. It names no session: a session
// id is a secret, and the key's lease already binds the reservation to
// its session. Owner is a hash of the receipt's key, which proves the
// holder without letting a reader of etcd make a receipt.
type reservation struct {
	Deadline int64  `json:"deadline"` // unix ns; after it the message is ready again
	Owner    string `json:"owner,omitempty"`
	Node     string `json:"node,omitempty"`
	// The worker: the process id its client declared, and when it
	// reserved (unix ns), for Stats' in-flight listing.
	Pid      uint32 `json:"pid,omitempty"`
	Reserved int64  `json:"reserved,omitempty"`
}

// deadRecord is the value of dead/<seq>.
type deadRecord struct {
	meta
	Died   int64  `json:"died"`
	Reason string `json:"reason"`
}

func encode(v any) string {
	b, _ := json.Marshal(v) // plain structs of numbers and strings
	return string(b)
}

func decodeMeta(b []byte) (meta, error) {
	var m meta
	err := json.Unmarshal(b, &m)
	return m, err
}

func decodeReservation(b []byte) (reservation, error) {
	var r reservation
	err := json.Unmarshal(b, &r)
	return r, err
}

// Message is a message as a consumer or an operator sees it.
type Message struct {
	Queue      string
	ID         string // the sequence number in decimal
	Payload    []byte
	Enqueued   time.Time
	Deliveries int
	DedupID    string
	Last       bool // pushed with WithLast
	// Dead letters only.
	DeadAt     time.Time
	DeadReason string
}

// Delivery is a reserved message: until Deadline, or until the consumer's
// session ends, nobody else is handed it.
type Delivery struct {
	Message
	Receipt  Receipt
	Deadline time.Time
	// Lease is the lease the reservation is bound to (NoLease without a
	// session).
	Lease clientv3.LeaseID
}

// Receipt names one reservation and proves its holder: the queue, the
// message's sequence number, the etcd revision that created the
// reservation key, and Key, 128 random bits made for this reservation
// (etcd keeps only their hash). A reservation that ended and was made
// again has another revision and another key, so an old receipt can never
// ack, nack or extend it; and a receipt cannot be guessed from the
// message's id and the revision.
type Receipt struct {
	Queue string
	Seq   uint64
	Rev   int64
	Key   string
}

// String is the receipt's text form, QUEUE/SEQ/KEY/REV (the revision
// last, as before keys were added, for tools that read it).
func (r Receipt) String() string { return fmt.Sprintf("%s/%d/%s/%d", r.Queue, r.Seq, r.Key, r.Rev) }

// name is the receipt without its key, for messages and logs.
func (r Receipt) name() string { return fmt.Sprintf("%s/%d (revision %d)", r.Queue, r.Seq, r.Rev) }

// ParseReceipt reads the text form of a receipt.
func ParseReceipt(s string) (Receipt, error) {
	bad := &FieldError{Field: "receipt", Msg: "not a receipt (QUEUE/SEQ/KEY/REVISION, as Reserve answered it)"}
	parts := strings.Split(s, "/")
	if len(parts) != 4 {
		return Receipt{}, bad
	}
	seq, err1 := strconv.ParseUint(parts[1], 10, 64)
	rev, err2 := strconv.ParseInt(parts[3], 10, 64)
	if err1 != nil || err2 != nil || seq == 0 || rev <= 0 || !validReceiptKey(parts[2]) {
		return Receipt{}, bad
	}
	r := Receipt{Queue: parts[0], Seq: seq, Rev: rev, Key: parts[2]}
	if err := ValidateName(r.Queue); err != nil {
		return Receipt{}, bad
	}
	return r, nil
}

// Stats counts a queue's messages at one revision.
type Stats struct {
	Queue     string
	Depth     int // Ready + InFlight + Delayed
	Ready     int
	InFlight  int
	Delayed   int
	Dead      int
	OldestAge time.Duration
	Revision  int64
	// With WithInFlight: the in-flight messages, oldest id first, at most
	// MaxInFlightListed, and whether more are in flight.
	InFlightMessages []InFlight
	InFlightMore     bool
	Gate             *Gate // nil: the queue has no gate
}

func unixTime(ns int64) time.Time {
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns)
}
