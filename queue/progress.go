package queue

import (
	"context"
	"fmt"
	"time"
	"unicode/utf8"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Progress reports. The holder of a reservation says how far it has got
// with its message: a percent and a short text, kept at status/<seq>
// beside the reservation and listed by Stats(WithInFlight). The key lives
// under the reservation's lease, so it goes with the worker's session;
// Ack, Nack and the reaping of an expired reservation delete it in the
// transaction that ends the reservation. The status/ keys sort after
// "res0", outside the range the views watch: a report wakes no waiting
// Reserve.

// MaxProgressMessage bounds a progress report's text, in bytes.
const MaxProgressMessage = 1024

// progressRecord is the value of status/<seq>. Rev is the create revision
// of the reservation it reports on: a report is shown only with that
// reservation, never with a later one of the same message.
type progressRecord struct {
	Percent uint32 `json:"percent"`
	Message string `json:"message,omitempty"`
	At      int64  `json:"at"` // unix ns
	Rev     int64  `json:"rev"`
}

// Progress is a worker's last report on the message it holds.
type Progress struct {
	Percent int
	Message string
	At      time.Time
}

func (k keys) status(seq uint64) string { return k.root + "status/" + seqString(seq) }
func (k keys) statusPrefix() string     { return k.root + "status/" }

// WithWorker records the reserving worker's process id with the
// reservation, for Stats' in-flight listing.
func WithWorker(pid uint32) ReserveOption { return func(o *reserveOpts) { o.pid = pid } }

// ValidateProgress checks a report: percent from 0 to 100, message at
// most MaxProgressMessage bytes of UTF-8.
func ValidateProgress(percent int, message string) error {
	if percent < 0 || percent > 100 {
		return &FieldError{Field: "percent", Msg: fmt.Sprintf("%d is not from 0 to 100", percent)}
	}
	if len(message) > MaxProgressMessage {
		return &FieldError{Field: "message", Msg: fmt.Sprintf("%d bytes, over the limit of %d", len(message), MaxProgressMessage)}
	}
	if !utf8.ValidString(message) {
		return &FieldError{Field: "message", Msg: "not valid UTF-8"}
	}
	return nil
}

// Progress records the holder's report on the reservation r names,
// replacing its last one. It writes under the reservation's lease in one
// transaction with the check that the reservation still holds, so a
// stale receipt (ErrStaleReceipt) never overwrites the report of whoever
// holds the message now. Receipts and sessions are checked as for Ack.
func (b *Broker) Progress(ctx context.Context, r Receipt, percent int, message string, opts ...CallOption) error {
	if err := ValidateName(r.Queue); err != nil {
		return err
	}
	if err := ValidateProgress(percent, message); err != nil {
		return err
	}
	k := b.keys(r.Queue)
	rr, err := b.claimRecord(ctx, k, r, callerOf(opts))
	if err != nil {
		return refused(err, "progress", r)
	}
	rec := progressRecord{Percent: uint32(percent), Message: message, At: time.Now().UnixNano(), Rev: r.Rev}
	return b.putProgress(ctx, k, r, rr.lease, rec)
}

// putProgress writes a report under lease if r's reservation still holds:
// the claim that found lease read the reservation before this write, and
// the compare settles any race in between.
func (b *Broker) putProgress(ctx context.Context, k keys, r Receipt, lease clientv3.LeaseID, rec progressRecord) error {
	resp, err := b.cli.Txn(ctx).If(holds(k, r)).
		Then(clientv3.OpPut(k.status(r.Seq), encode(rec), clientv3.WithLease(lease))).Commit()
	switch {
	case err != nil && leaseGone(err):
		// The session ended between the check and the write: so did the
		// reservation.
		return fmt.Errorf("progress %s: %w", r.name(), ErrStaleReceipt)
	case err != nil:
		return err
	case !resp.Succeeded:
		return fmt.Errorf("progress %s: %w", r.name(), ErrStaleReceipt)
	}
	return nil
}
