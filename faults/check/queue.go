package check

import "fmt"

// A Push is one attempt to enqueue a message. Payloads must be unique
// across attempts (a retry is a new attempt with a new payload), so that a
// message whose push answer was lost can be recognised when it is
// delivered.
type Push struct {
	Client  string
	ID      string // the message id answered; "" when the answer was lost or the push failed
	Payload string
	Invoke  int64
	Return  int64
	Outcome Outcome
}

// AckKind says how a delivery was settled by its worker.
type AckKind string

// How a delivery was settled.
const (
	NoAck  AckKind = ""     // neither: the worker crashed, or gave up
	Acked  AckKind = "ack"  // the worker sent an ack
	Nacked AckKind = "nack" // the worker sent a nack (the message goes back)
)

// A Delivery is one reservation of a message by a worker, and how the
// worker settled it.
type Delivery struct {
	Worker      string
	Message     string // the message id
	Payload     string // as received; "" if not recorded
	Reservation string // the receipt; unique per delivery
	Start       int64  // when the reserve call returned the message

	// Deadline, if known (>0), is the earliest time the reservation's
	// visibility could have run out: the reserve call's invoke time plus
	// the visibility (after an extension, the extend call's invoke plus
	// it). From then on the queue may hand the message to someone else.
	Deadline int64

	Ack       AckKind
	End       int64   // when the ack or nack was sent (its invoke time); 0 for NoAck
	AckResult Outcome // of the ack or nack call
}

// A Crash says the worker was killed at At: whatever it had reserved may
// be delivered again from then on.
type Crash struct {
	Worker string
	At     int64
}

// An Expiry says the reservation had ended by At: its key was gone (the
// worker's session lease ended, or another reserve took over after the
// deadline). A deadline that merely passed is not an expiry: beacon still
// accepts the ack if nobody took the message since (Delivery.Deadline
// covers redeliveries after it).
type Expiry struct {
	Reservation string
	At          int64
}

// A Message is an entry of the queue's final contents; Payload may be ""
// if not read.
type Message struct {
	ID      string
	Payload string
}

// QueueContents is what the queue held at the end, read after every worker
// had stopped.
type QueueContents struct {
	Ready    []Message // including delayed ones
	InFlight []Message
	Dead     []Message
}

// QueueHistory is everything a queue workload recorded, on one queue.
type QueueHistory struct {
	Pushes     []Push
	Deliveries []Delivery
	Crashes    []Crash
	Expiries   []Expiry
	Final      QueueContents
}

func (h QueueHistory) validate() error {
	for i, p := range h.Pushes {
		switch {
		case !p.Outcome.valid():
			return fmt.Errorf("%w: push %d: outcome %q", ErrBadHistory, i, p.Outcome)
		case p.Outcome == OK && p.ID == "":
			return fmt.Errorf("%w: push %d (payload %q) is ok but has no message id", ErrBadHistory, i, p.Payload)
		}
	}
	receipts := make(map[string]int)
	for i, d := range h.Deliveries {
		switch {
		case d.Message == "" || d.Reservation == "":
			return fmt.Errorf("%w: delivery %d needs a message id and a reservation", ErrBadHistory, i)
		case d.Ack != NoAck && d.Ack != Acked && d.Ack != Nacked:
			return fmt.Errorf("%w: delivery %d: ack kind %q", ErrBadHistory, i, d.Ack)
		case d.Ack != NoAck && (!d.AckResult.valid() || d.End < d.Start):
			return fmt.Errorf("%w: delivery %d (%s): an %s needs a result and a time after the start", ErrBadHistory, i, d, d.Ack)
		}
		if j, dup := receipts[d.Reservation]; dup {
			return fmt.Errorf("%w: deliveries %d and %d share reservation %q", ErrBadHistory, j, i, d.Reservation)
		}
		receipts[d.Reservation] = i
	}
	return nil
}

func (d Delivery) String() string {
	s := fmt.Sprintf("message %s to %s at %s (reservation %s", d.Message, d.Worker, stamp(d.Start), d.Reservation)
	if d.Ack != NoAck {
		s += fmt.Sprintf(", %s sent at %s: %s", d.Ack, stamp(d.End), d.AckResult)
	}
	return s + ")"
}

// queueIndex ties message ids to pushes, learning the ids of pushes whose
// answer was lost from the payloads they are delivered with.
type queueIndex struct {
	pushes     []Push
	byID       map[string][]int // message id -> pushes
	byPayload  map[string][]int // payload -> pushes
	resolved   map[int]string   // indeterminate push -> the id it turned out to have
	unresolved int              // indeterminate pushes without an id yet
}

func newQueueIndex(pushes []Push) *queueIndex {
	q := &queueIndex{pushes: pushes, byID: make(map[string][]int), byPayload: make(map[string][]int), resolved: make(map[int]string)}
	for i, p := range pushes {
		if p.ID != "" {
			q.byID[p.ID] = append(q.byID[p.ID], i)
		} else if p.Outcome == Indeterminate {
			q.unresolved++
		}
		q.byPayload[p.Payload] = append(q.byPayload[p.Payload], i)
	}
	return q
}

// resolve says whether message id (seen with payload, if not "") was
// pushed, and if not, why it is unexpected.
func (q *queueIndex) resolve(id, payload string) (bool, string) {
	if _, ok := q.byID[id]; ok {
		return true, ""
	}
	if payload == "" {
		// Nothing to match on: it may be any indeterminate push.
		if q.unresolved > 0 {
			q.unresolved--
			q.byID[id] = nil
			return true, ""
		}
		return false, "it was never pushed"
	}
	why := "it was never pushed"
	for _, i := range q.byPayload[payload] {
		p := q.pushes[i]
		switch {
		case p.ID == "" && p.Outcome == Indeterminate:
			if _, taken := q.resolved[i]; !taken {
				q.resolved[i] = id
				q.unresolved = max(q.unresolved-1, 0)
				q.byID[id] = append(q.byID[id], i)
				return true, ""
			}
		case p.Outcome == Failed:
			why = "its push failed"
		case p.ID != "":
			why = fmt.Sprintf("it carries the payload of message %s", p.ID)
		}
	}
	return false, why
}
