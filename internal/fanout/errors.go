package fanout

import (
	"fmt"

	"github.com/beaconhq/beacon/internal/rpcerr"
	"google.golang.org/grpc/codes"
)

// ErrSlow: the subscriber let more than the hub's Limit events, or
// MaxBytes bytes of them, queue up unread and was dropped. It answers
// RESOURCE_EXHAUSTED over gRPC. A subscriber's Next returns it as a
// *SlowError, which says which bound.
var ErrSlow = rpcerr.NewNamed(codes.ResourceExhausted, "watcher fell behind and was dropped")

// SlowError is ErrSlow with the bound the subscriber went past: Limit is
// the bound's name (watch-buffer: events; max-watch-buffer-bytes: bytes),
// Value its value.
type SlowError struct {
	Limit string
	Value int64
}

// Bound names of a SlowError.
const (
	LimitEvents = "watch-buffer"
	LimitBytes  = "max-watch-buffer-bytes"
)

// Unread is what the subscriber left unread, for a message: "more than
// <Unread>" ("4096 changes", "16777216 bytes of changes") "(<Limit>
// <Value>)".
func (e *SlowError) Unread() string {
	if e.Limit == LimitBytes {
		return fmt.Sprintf("%d bytes of changes", e.Value)
	}
	return fmt.Sprintf("%d changes", e.Value)
}

func (e *SlowError) Error() string {
	return fmt.Sprintf("watcher left more than %s unread (%s %d) and was dropped", e.Unread(), e.Limit, e.Value)
}

// Is makes errors.Is(err, ErrSlow) hold.
func (e *SlowError) Is(target error) bool { return target == ErrSlow }

// GRPCCode is ErrSlow's.
func (e *SlowError) GRPCCode() codes.Code { return codes.ResourceExhausted }

// ErrClosed: the hub's client is closed. It answers UNAVAILABLE.
var ErrClosed = rpcerr.NewNamed(codes.Unavailable, "etcd client closed")

// BrokenError ends every subscription of a feed whose etcd watch ended:
// no raft leader (Err is etcd's), a compaction (CompactRevision is set),
// or the client closing (Err is ErrClosed). Subscribers start over, or
// give up on an Err.
type BrokenError struct {
	Err             error
	CompactRevision int64
}

func (e *BrokenError) Error() string {
	switch {
	case e.CompactRevision != 0:
		return fmt.Sprintf("etcd watch compacted at revision %d", e.CompactRevision)
	case e.Err != nil:
		return "etcd watch ended: " + e.Err.Error()
	}
	return "etcd watch closed"
}

func (e *BrokenError) Unwrap() error { return e.Err }
