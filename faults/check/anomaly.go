// Package check judges the histories that the fault workloads record: it
// runs no workload and touches no network, so that every verdict can be
// reproduced from the recorded files alone and every checker can be tested
// with hand-made histories, good and bad.
//
// Four checkers, one per guarantee beacon makes:
//
//   - CheckExclusive: `beacon lock` and `beacon elect` never let two CMDs
//     (or more than N, for a semaphore) run at once, and holders run in
//     token order.
//   - CheckFenced: writes fenced by a lock's token are applied in token
//     order and never after a later holder's (a direct check and a
//     porcupine linearizability check).
//   - CheckQueue: the queue loses nothing, invents nothing, redelivers
//     only after a crash, an expiry or a nack, and refuses acks of ended
//     reservations.
//   - Summary: the table every workload prints, and the error that fails
//     the test.
//
// Checkers return anomalies (violations of a guarantee) as values, not
// errors: a run with anomalies is a finding to report, whereas an error
// means the history itself cannot be judged (ErrBadHistory).
package check

import (
	"errors"
	"time"
)

// ErrBadHistory is returned, wrapped with the reason, when a history cannot
// be judged at all (a malformed record, a value written twice): judging it
// anyway could hide a violation behind a false pass.
var ErrBadHistory = errors.New("check: bad history")

// Kind names a class of anomaly, so that tests and reports can tell them
// apart without parsing text.
type Kind string

// Anomalies of exclusive intervals (CheckExclusive).
const (
	// KindOverlap: two holders of a limit-1 lock or leadership ran at once.
	KindOverlap Kind = "overlap"
	// KindOverLimit: more than N holders of a semaphore ran at once.
	KindOverLimit Kind = "over-limit"
	// KindTokenOrder: a holder ran after a holder with a higher token or
	// revision, so it ran on a grant that had already ended.
	KindTokenOrder Kind = "token-order"
	// KindMalformed: events that do not pair up (an exit without an enter,
	// an enter twice); such a history could hide an overlap.
	KindMalformed Kind = "malformed"
)

// Anomalies of fenced writes (CheckFenced).
const (
	// KindPhantom: a value was observed that nobody wrote.
	KindPhantom Kind = "phantom-value"
	// KindFailedApplied: a write answered failed was observed anyway.
	KindFailedApplied Kind = "failed-write-applied"
	// KindSuperseded: a write was applied after a write with a higher
	// token had been applied: a superseded holder got through the fence.
	KindSuperseded Kind = "superseded-write-applied"
	// KindStaleRead: a read returned a value older than a write that had
	// completed, with a higher token, before the read began.
	KindStaleRead Kind = "stale-read"
	// KindLostWrite: a write answered ok is missing from the register's
	// complete history.
	KindLostWrite Kind = "lost-write"
	// KindRevived: a token was refused (stale) and later accepted: a grant
	// that had ended came back.
	KindRevived Kind = "stale-token-revived"
	// KindFinal: the final value is not from a write with the highest
	// applied token.
	KindFinal Kind = "final-not-latest"
	// KindNotLinearizable: porcupine found no linearization of the
	// history under the fenced-register model.
	KindNotLinearizable Kind = "not-linearizable"
)

// Anomalies of queue accounting (CheckQueue).
const (
	// KindLost: a message pushed ok was neither acked nor left in the queue.
	KindLost Kind = "lost"
	// KindUnexpected: a message was delivered or left in the queue that
	// nobody pushed (or whose push failed).
	KindUnexpected Kind = "unexpected"
	// KindDuplicate: a message was delivered again while nothing (crash,
	// expiry, nack) had ended its earlier delivery, or listed twice.
	KindDuplicate Kind = "unexplained-duplicate"
	// KindAckAfterExpiry: an ack sent after its reservation had ended was
	// answered ok.
	KindAckAfterExpiry Kind = "ack-after-expiry"
	// KindAckedPresent: a message acked ok was still in the queue at the
	// end.
	KindAckedPresent Kind = "acked-but-present"
	// KindCorrupt: a delivery's payload differs from what was pushed.
	KindCorrupt Kind = "payload-mismatch"
)

// An Anomaly is one violation found in a history, with a text that names
// the records involved so that a reader can find them in the logs.
type Anomaly struct {
	Kind Kind
	Text string
}

func (a Anomaly) String() string { return string(a.Kind) + ": " + a.Text }

// Outcome is what the caller of an operation learned: an operation that
// timed out or lost its connection may or may not have taken effect, and
// the checkers must allow both.
type Outcome string

// Outcomes of an operation.
const (
	OK            Outcome = "ok"
	Failed        Outcome = "failed"        // definitely not applied
	Indeterminate Outcome = "indeterminate" // applied or not, unknown
)

func (o Outcome) valid() bool { return o == OK || o == Failed || o == Indeterminate }

// stamp renders a nanosecond timestamp as a UTC time of day with all nine
// digits: histories span minutes, and anomalies are about nanoseconds.
func stamp(ns int64) string {
	return time.Unix(0, ns).UTC().Format("15:04:05.000000000")
}

// dur renders a span of nanoseconds.
func dur(ns int64) string { return time.Duration(ns).String() }
