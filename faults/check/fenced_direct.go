package check

import (
	"fmt"
	"math"
	"sort"
)

// CheckFencedDirect checks a fenced-register history without search, from
// what the fence promises: a grant that ended never writes again, and a
// later grant has a higher token, so the writes applied to the register
// carry nondecreasing tokens. It reports
//
//   - KindPhantom: an observed value that no write wrote (or that came
//     back after being overwritten);
//   - KindFailedApplied: an observed value of a write answered failed;
//   - KindSuperseded: a write applied although a write with a higher
//     token had been applied before it (by real time: the higher one had
//     returned, or been read, before the lower one was invoked; or by
//     Revision; or by position in Observed);
//   - KindStaleRead: a read of a value whose write has a lower token than
//     a write applied before the read began;
//   - KindRevived: a write of a token accepted after the same token had
//     been refused;
//   - KindLostWrite: an OK write missing from Observed;
//   - KindFinal: a Final value that is not from a write with the highest
//     applied token, or that differs from the last Observed value.
func CheckFencedDirect(h FencedHistory) ([]Anomaly, error) {
	byValue, err := h.validate()
	if err != nil {
		return nil, err
	}
	c := &fencedChecker{h: h, byValue: byValue, appliedBy: make([]int64, len(h.Writes))}
	c.observe()
	c.superseded()
	c.staleReads()
	c.revived()
	c.observedOrder()
	c.final()
	return c.anomalies, nil
}

type fencedChecker struct {
	h         FencedHistory
	byValue   map[string]int
	appliedBy []int64 // per write: time by which it had applied; MaxInt64 if not known applied
	known     []bool  // per write: known applied (OK, or observed)
	anomalies []Anomaly
}

func (c *fencedChecker) add(k Kind, format string, args ...any) {
	c.anomalies = append(c.anomalies, Anomaly{k, fmt.Sprintf(format, args...)})
}

// lookup maps an observed value to its write: -1 for the initial value,
// ok false (and an anomaly) for a value nobody wrote or a failed write's.
func (c *fencedChecker) lookup(v, where string) (int, bool) {
	if v == c.h.Initial {
		return -1, true
	}
	i, ok := c.byValue[v]
	if !ok {
		c.add(KindPhantom, "%s: %q was never written", where, v)
		return 0, false
	}
	if w := c.h.Writes[i]; w.Outcome == Failed {
		c.add(KindFailedApplied, "%s: %q, but its write was refused: %s", where, v, w)
		return 0, false
	}
	return i, true
}

// observe works out which writes are known to have applied, and by when:
// an OK write by its return, an indeterminate one by the first read that
// saw it, or at an unknown time if only Final or Observed shows it.
func (c *fencedChecker) observe() {
	c.known = make([]bool, len(c.h.Writes))
	for i, w := range c.h.Writes {
		c.appliedBy[i] = math.MaxInt64
		if w.Outcome == OK {
			c.appliedBy[i], c.known[i] = w.Return, true
		}
	}
	for _, r := range c.h.Reads {
		if r.Outcome != OK {
			continue
		}
		if i, ok := c.lookup(r.Value, r.String()); ok && i >= 0 {
			c.appliedBy[i] = min(c.appliedBy[i], r.Return)
			c.known[i] = true
		}
	}
	if c.h.Final != nil {
		if i, ok := c.lookup(*c.h.Final, "final value"); ok && i >= 0 {
			c.known[i] = true
		}
	}
	for n, v := range c.h.Observed {
		if i, ok := c.lookup(v, fmt.Sprintf("observed value #%d", n)); ok && i >= 0 {
			c.known[i] = true
		}
	}
}

// highest answers "which applied write had the highest token among those
// applied before t": applied writes sorted by appliedBy, with running
// maxima.
type highest struct {
	at   []int64
	best []int // index of the write with the highest token so far
}

func (c *fencedChecker) highestIndex() highest {
	var idx []int
	for i := range c.h.Writes {
		if c.appliedBy[i] != math.MaxInt64 {
			idx = append(idx, i)
		}
	}
	sort.Slice(idx, func(a, b int) bool { return c.appliedBy[idx[a]] < c.appliedBy[idx[b]] })
	var hi highest
	for _, i := range idx {
		b := i
		if n := len(hi.best); n > 0 && c.h.Writes[hi.best[n-1]].Token >= c.h.Writes[i].Token {
			b = hi.best[n-1]
		}
		hi.at = append(hi.at, c.appliedBy[i])
		hi.best = append(hi.best, b)
	}
	return hi
}

// before returns the highest-token write applied strictly before t, or -1.
func (hi highest) before(t int64) int {
	n := sort.Search(len(hi.at), func(k int) bool { return hi.at[k] >= t })
	if n == 0 {
		return -1
	}
	return hi.best[n-1]
}

func (c *fencedChecker) superseded() {
	hi := c.highestIndex()
	for i, w := range c.h.Writes {
		if !c.known[i] {
			continue
		}
		if a := hi.before(w.Invoke); a >= 0 && c.h.Writes[a].Token > w.Token {
			c.add(KindSuperseded, "token %d applied after token %d: %s was applied by %s, before %s",
				w.Token, c.h.Writes[a].Token, c.h.Writes[a], stamp(c.appliedBy[a]), w)
		}
	}
	var revs []int
	for i, w := range c.h.Writes {
		if w.Outcome == OK && w.Revision > 0 {
			revs = append(revs, i)
		}
	}
	sort.Slice(revs, func(a, b int) bool { return c.h.Writes[revs[a]].Revision < c.h.Writes[revs[b]].Revision })
	c.tokenSequence(revs, "by revision")
}

// tokenSequence reports each write in an application order whose token is
// below one applied before it.
func (c *fencedChecker) tokenSequence(order []int, how string) {
	top := -1
	for _, i := range order {
		w := c.h.Writes[i]
		if top >= 0 && c.h.Writes[top].Token > w.Token {
			c.add(KindSuperseded, "token %d applied after token %d (%s): %s after %s", w.Token, c.h.Writes[top].Token, how, w, c.h.Writes[top])
			continue
		}
		top = i
	}
}

func (c *fencedChecker) staleReads() {
	hi := c.highestIndex()
	for _, r := range c.h.Reads {
		if r.Outcome != OK {
			continue
		}
		token := int64(0) // the initial value's
		if r.Value != c.h.Initial {
			i, ok := c.byValue[r.Value]
			if !ok || c.h.Writes[i].Outcome == Failed {
				continue // a phantom, reported already
			}
			token = c.h.Writes[i].Token
		}
		if a := hi.before(r.Invoke); a >= 0 && c.h.Writes[a].Token > token {
			c.add(KindStaleRead, "%s, but %s had been applied by %s", r, c.h.Writes[a], stamp(c.appliedBy[a]))
		}
	}
}

// revived reports a token accepted after it had been refused: the fence
// compares the lock key's create revision, and a key, once gone, never
// comes back with the same one.
func (c *fencedChecker) revived() {
	refused := make(map[int64]int) // token -> the earliest-returning failed write
	for i, w := range c.h.Writes {
		if w.Outcome != Failed {
			continue
		}
		if j, ok := refused[w.Token]; !ok || w.Return < c.h.Writes[j].Return {
			refused[w.Token] = i
		}
	}
	for i, w := range c.h.Writes {
		j, ok := refused[w.Token]
		if !ok || !c.known[i] || w.Invoke <= c.h.Writes[j].Return {
			continue
		}
		c.add(KindRevived, "token %d was refused, then accepted: %s after %s", w.Token, w, c.h.Writes[j])
	}
}
