package lock

import (
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/beaconhq/beacon/api/beaconpb"
	"github.com/beaconhq/beacon/internal/apiduration"
	"github.com/beaconhq/beacon/internal/rpcerr"
)

// Limits checked at the gRPC boundary.
const (
	MaxNameLen   = 128
	MaxValueSize = 1 << 20 // per fenced put, and for all of a request's values together
	MaxOps       = 128
	maxKeyLen    = 4096
	MaxTimeout   = 24 * time.Hour
)

// timeoutField is Acquire's wait: absent or zero waits as long as the
// call does.
var timeoutField = apiduration.Field{Name: "timeout", Max: MaxTimeout}

// FieldError names the request field that is wrong; it answers
// INVALID_ARGUMENT, and errors.Is(err, rpcerr.ErrInvalid) holds.
type FieldError = rpcerr.FieldError

// validName checks a lock's name: one path segment of printable UTF-8.
func validName(name string) error {
	switch {
	case name == "":
		return &FieldError{Field: "name", Msg: "must not be empty"}
	case len(name) > MaxNameLen:
		return &FieldError{Field: "name", Msg: fmt.Sprintf("is %d bytes, more than %d", len(name), MaxNameLen)}
	case strings.Contains(name, "/"):
		return &FieldError{Field: "name", Msg: fmt.Sprintf("%q must not contain '/'", name)}
	case !utf8.ValidString(name):
		return &FieldError{Field: "name", Msg: "is not valid UTF-8"}
	case strings.IndexFunc(name, func(r rune) bool { return !unicode.IsPrint(r) || unicode.IsSpace(r) }) >= 0:
		return &FieldError{Field: "name", Msg: fmt.Sprintf("%q must not contain spaces or control characters", name)}
	}
	return nil
}

// validateAcquire checks an Acquire or TryAcquire and returns its timeout
// (0: none).
func validateAcquire(req *beaconpb.LockAcquireRequest) (time.Duration, error) {
	if err := validName(req.Name); err != nil {
		return 0, err
	}
	if req.SessionId == "" {
		return 0, &FieldError{Field: "session_id", Msg: "must not be empty: open a session first (Session.Open)"}
	}
	timeout, err := timeoutField.Read(req.Timeout)
	if err != nil {
		return 0, err
	}
	if req.Limit < 0 || req.Limit > MaxLimit {
		return 0, &FieldError{Field: "limit", Msg: fmt.Sprintf("%d is not from 1 to %d (0 means 1)", req.Limit, MaxLimit)}
	}
	return timeout, nil
}

// checkKey checks that key is a lock key of this agent's namespace and
// returns the lock's name.
func (s *Service) checkKey(field, key string, token int64) (string, error) {
	root := s.namespace + "locks/"
	rest, ok := strings.CutPrefix(key, root)
	i := strings.LastIndexByte(rest, '/')
	if !ok || i < 0 {
		return "", &FieldError{Field: field, Msg: fmt.Sprintf("%q is not a lock key (%s<name>/<lease id in hex>)", key, root)}
	}
	if err := validName(rest[:i]); err != nil {
		return "", &FieldError{Field: field, Msg: fmt.Sprintf("%q: the lock's %v", key, err)}
	}
	if _, err := LeaseOf(key); err != nil {
		return "", &FieldError{Field: field, Msg: err.Error()}
	}
	if token <= 0 {
		return "", &FieldError{Field: "token", Msg: fmt.Sprintf("%d is not a fencing token (a revision, from Acquire)", token)}
	}
	return rest[:i], nil
}

// checkFenceKey checks the key of a fenced write: a lock grant's key, or a
// leadership's (<namespace>elections/<name>/<lease id in hex>, whose create
// revision is the leader's rev), so that a leader's writes are fenced the
// same way as a lock holder's.
func (s *Service) checkFenceKey(key string, token int64) error {
	if rest, ok := strings.CutPrefix(key, s.namespace+"elections/"); ok {
		i := strings.LastIndexByte(rest, '/')
		if i < 0 {
			return &FieldError{Field: "key", Msg: fmt.Sprintf("%q is not a leader key (%selections/<name>/<lease id in hex>)", key, s.namespace)}
		}
		if err := validName(rest[:i]); err != nil {
			return &FieldError{Field: "key", Msg: fmt.Sprintf("%q: the election's %v", key, err)}
		}
		if _, err := LeaseOf(key); err != nil {
			return &FieldError{Field: "key", Msg: err.Error()}
		}
		if token <= 0 {
			return &FieldError{Field: "token", Msg: fmt.Sprintf("%d is not a fencing token (the leader's rev, from Campaign)", token)}
		}
		return nil
	}
	_, err := s.checkKey("key", key, token)
	return err
}

// checkOps checks fenced operations: keys outside beacon's own state
// (except its config/ keys, which are the applications'), values within
// the payload limit.
func (s *Service) checkOps(ops []*beaconpb.LockFencedOp) error {
	if len(ops) == 0 || len(ops) > MaxOps {
		return &FieldError{Field: "ops", Msg: fmt.Sprintf("%d operations; give 1 to %d", len(ops), MaxOps)}
	}
	total := 0
	written := map[string]int{} // key -> the op that writes it
	for i, op := range ops {
		f := fmt.Sprintf("ops[%d]", i)
		if op.GetType() != beaconpb.LockOpType_LOCK_OP_GET {
			// etcd refuses a transaction that writes one key twice.
			if j, ok := written[op.GetKey()]; ok {
				return &FieldError{Field: f + ".key", Msg: fmt.Sprintf("ops[%d] writes the same key; write each key once", j)}
			}
			written[op.GetKey()] = i
		}
		switch op.GetType() {
		case beaconpb.LockOpType_LOCK_OP_PUT, beaconpb.LockOpType_LOCK_OP_DELETE, beaconpb.LockOpType_LOCK_OP_GET:
		default:
			return &FieldError{Field: f + ".type", Msg: fmt.Sprintf("%v: give PUT, DELETE or GET", op.GetType())}
		}
		switch {
		case op.Key == "":
			return &FieldError{Field: f + ".key", Msg: "must not be empty"}
		case len(op.Key) > maxKeyLen:
			return &FieldError{Field: f + ".key", Msg: fmt.Sprintf("is %d bytes, more than %d", len(op.Key), maxKeyLen)}
		case strings.HasPrefix(op.Key, s.namespace) && !strings.HasPrefix(op.Key, s.namespace+"config/"):
			return &FieldError{Field: f + ".key", Msg: fmt.Sprintf("%q is beacon's own state; fenced writes go outside %s, or under %sconfig/",
				op.Key, s.namespace, s.namespace)}

		case len(op.Value) > MaxValueSize:
			return &FieldError{Field: f + ".value", Msg: fmt.Sprintf("is %d bytes, more than 1 MiB", len(op.Value))}
		}
		total += len(op.Value)
	}
	if total > MaxValueSize {
		return &FieldError{Field: "ops", Msg: fmt.Sprintf("values add up to %d bytes, more than 1 MiB", total)}
	}
	return nil
}
