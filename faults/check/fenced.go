package check

import (
	"fmt"
	"math"
)

// A Write is one attempt of a holder to write its register through
// beacon's Fenced op (a put applied only while the grant with Token still
// holds). Invoke and Return are the machine-clock nanoseconds around the
// call; an Indeterminate write's Return is ignored (it may take effect at
// any time after Invoke, or never).
type Write struct {
	Client  string // who wrote: host/pid or worker name, for reports and the visualisation
	Token   int64  // the fencing token it wrote under
	Value   string // unique across the history, so observations name their write
	Invoke  int64
	Return  int64
	Outcome Outcome // Failed: refused as stale (FAILED_PRECONDITION), nothing written

	// Revision, when known (>0), is the etcd revision at which an OK write
	// applied (its response header's): it orders applied writes exactly.
	Revision int64
}

// A Read is one observation of the register's value, through a fenced get
// or a plain linearizable get. Only OK reads are judged.
type Read struct {
	Client  string
	Value   string
	Invoke  int64
	Return  int64
	Outcome Outcome
}

// FencedHistory is everything a fenced-register workload recorded. The
// register is one key, written by the holders of one lock (limit 1), each
// under its own token.
type FencedHistory struct {
	// Initial is the register's value before the first write ("" if the
	// key did not exist).
	Initial string
	Writes  []Write
	Reads   []Read

	// Final, if set, is the value read after every writer had stopped and
	// every indeterminate write had had time to land or not.
	Final *string

	// Observed, if not nil, is the complete sequence of values the
	// register took, in order (from a watch started before the first
	// write, or the key's revisions before compaction): it makes the
	// token-order check exact and lets lost writes be found.
	Observed []string
}

// CheckFenced runs both the direct checks (CheckFencedDirect) and the
// linearizability check (CheckFencedLinearizable). The error is
// ErrBadHistory for a history that cannot be judged, or ErrInconclusive
// when porcupine ran out of time (the direct anomalies are still returned).
func CheckFenced(h FencedHistory, opts ...Option) ([]Anomaly, error) {
	anomalies, err := CheckFencedDirect(h)
	if err != nil {
		return nil, err
	}
	lin, err := CheckFencedLinearizable(h, opts...)
	return append(anomalies, lin...), err
}

// validate refuses histories whose records cannot be told apart or
// ordered: judging them could turn a violation into a pass.
func (h FencedHistory) validate() (map[string]int, error) {
	byValue := make(map[string]int, len(h.Writes))
	for i, w := range h.Writes {
		switch {
		case !w.Outcome.valid():
			return nil, fmt.Errorf("%w: write %d (%s): outcome %q", ErrBadHistory, i, w, w.Outcome)
		case w.Token <= 0:
			return nil, fmt.Errorf("%w: write %d (%s): token %d is not a revision", ErrBadHistory, i, w, w.Token)
		case w.Outcome != Indeterminate && w.Return < w.Invoke:
			return nil, fmt.Errorf("%w: write %d (%s) returned before it was invoked", ErrBadHistory, i, w)
		case w.Value == h.Initial:
			return nil, fmt.Errorf("%w: write %d (%s) writes the initial value %q", ErrBadHistory, i, w, h.Initial)
		}
		if j, dup := byValue[w.Value]; dup {
			return nil, fmt.Errorf("%w: writes %d and %d both write %q; values must be unique", ErrBadHistory, j, i, w.Value)
		}
		byValue[w.Value] = i
	}
	for i, r := range h.Reads {
		if !r.Outcome.valid() {
			return nil, fmt.Errorf("%w: read %d: outcome %q", ErrBadHistory, i, r.Outcome)
		}
		if r.Outcome == OK && r.Return < r.Invoke {
			return nil, fmt.Errorf("%w: read %d returned before it was invoked", ErrBadHistory, i)
		}
	}
	return byValue, nil
}

func (w Write) String() string {
	s := fmt.Sprintf("%s token %d wrote %q [%s, ", w.Client, w.Token, w.Value, stamp(w.Invoke))
	if w.Outcome == Indeterminate {
		s += "?"
	} else {
		s += stamp(w.Return)
	}
	s += "] " + string(w.Outcome)
	if w.Revision > 0 {
		s += fmt.Sprintf(" at rev %d", w.Revision)
	}
	return s
}

func (r Read) String() string {
	return fmt.Sprintf("%s read %q [%s, %s]", r.Client, r.Value, stamp(r.Invoke), stamp(r.Return))
}

// returnOf is when a write is known to have taken effect if it did: its
// Return, or never for an indeterminate one.
func returnOf(w Write) int64 {
	if w.Outcome == Indeterminate {
		return math.MaxInt64
	}
	return w.Return
}
