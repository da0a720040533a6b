package queue

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"

	"github.com/beaconhq/beacon/internal/rpcerr"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
)

// Owners of reservations. Reserve makes a key of 128 random bits for each
// reservation, hands it out in the receipt and keeps only its hash in the
// reservation record: whoever acks, nacks or extends must show the key,
// so a receipt cannot be guessed from a message id and a revision, nor
// made by someone who can only read etcd. A reservation made in a session
// also lives under that session's lease; a call that names a session is
// refused unless the reservation is that session's.

// ErrNotYours: the reservation is another session's (or was made without
// one) and the call named a session.
var ErrNotYours = rpcerr.NewNamed(codes.PermissionDenied, "the reservation is not this session's")

// receiptKeyBytes is the size of a receipt's key: 128 bits.
const receiptKeyBytes = 16

// newReceiptKey makes a receipt's key.
func newReceiptKey() string {
	b := make([]byte, receiptKeyBytes)
	_, _ = rand.Read(b) // crypto/rand does not fail on Linux
	return hex.EncodeToString(b)
}

func validReceiptKey(k string) bool {
	b, err := hex.DecodeString(k)
	return err == nil && len(b) == receiptKeyBytes
}

// ownerOf is what the reservation record keeps of a receipt's key.
func ownerOf(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:receiptKeyBytes])
}

// CallOption says who makes an Ack, Nack or Extend.
type CallOption func(*caller)

type caller struct {
	session bool
	lease   clientv3.LeaseID
}

// InSession makes the call on behalf of a session whose current lease is
// lease: the reservation must be under that lease.
func InSession(lease clientv3.LeaseID) CallOption {
	return func(c *caller) { c.session, c.lease = true, lease }
}

func callerOf(opts []CallOption) caller {
	var c caller
	for _, o := range opts {
		o(&c)
	}
	return c
}

// resRecord is a reservation as a claim checks it.
type resRecord struct {
	found  bool
	create int64
	lease  clientv3.LeaseID
	rec    reservation
}

// allows checks r and c against the record: ErrStaleReceipt unless the
// record is the reservation r names and r's key is its owner's (a wrong
// key reads as an ended reservation, telling a guesser nothing), then
// ErrNotYours if c names a session the reservation is not under.
func (rr resRecord) allows(r Receipt, c caller) error {
	if !rr.found || rr.create != r.Rev ||
		subtle.ConstantTimeCompare([]byte(rr.rec.Owner), []byte(ownerOf(r.Key))) != 1 {
		return ErrStaleReceipt
	}
	if c.session && rr.lease != c.lease {
		return ErrNotYours
	}
	return nil
}

// claim checks that the caller may act on r's reservation now; the
// transaction that acts compares r.Rev, so the reservation checked is the
// one acted on. A record is immutable in what claim checks (the owner and
// the lease stay with the key until it is deleted), so a view's or a
// serializable read's answer is trusted when it allows; a refusal is
// only answered on a linearizable read.
func (b *Broker) claim(ctx context.Context, k keys, r Receipt, c caller) error {
	_, err := b.claimRecord(ctx, k, r, c)
	return err
}

// claimRecord is claim answering the record it allowed.
func (b *Broker) claimRecord(ctx context.Context, k keys, r Receipt, c caller) (resRecord, error) {
	if rr, ok := b.viewRecord(k.queue, r.Seq); ok && rr.allows(r, c) == nil {
		return rr, nil
	}
	rr, err := b.readRecord(ctx, k, r.Seq, clientv3.WithSerializable())
	if err == nil && rr.allows(r, c) == nil {
		return rr, nil
	}
	if rr, err = b.readRecord(ctx, k, r.Seq); err != nil {
		return resRecord{}, err
	}
	return rr, rr.allows(r, c)
}

// viewRecord is the reservation of seq as this agent's view of the queue
// has it, if the view is open and holds one.
func (b *Broker) viewRecord(queue string, seq uint64) (resRecord, bool) {
	b.mu.Lock()
	v := b.views.lookup(queue)
	b.mu.Unlock()
	if v == nil {
		return resRecord{}, false
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	rs, ok := v.res[seq]
	if !ok {
		return resRecord{}, false
	}
	return resRecord{found: true, create: rs.create, lease: rs.lease, rec: rs.r}, true
}

func (b *Broker) readRecord(ctx context.Context, k keys, seq uint64, opts ...clientv3.OpOption) (resRecord, error) {
	resp, err := b.cli.Get(ctx, k.res(seq), opts...)
	if err != nil || len(resp.Kvs) == 0 {
		return resRecord{}, err
	}
	kv := resp.Kvs[0]
	rec, err := decodeReservation(kv.Value)
	if err != nil {
		return resRecord{}, nil // unreadable: no receipt matches it
	}
	return resRecord{found: true, create: kv.CreateRevision, lease: clientv3.LeaseID(kv.Lease), rec: rec}, nil
}
