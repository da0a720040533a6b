package check

import (
	"fmt"
	"sort"
	"strings"
)

// CheckExclusive judges the interval logs of `beacon lock NAME -- CMD`
// (limit 1, or -n N) and `beacon elect NAME -- CMD` (limit 1): it pairs
// the events into intervals (BuildIntervals) and checks them
// (CheckIntervals), each name on its own.
func CheckExclusive(events []Event, limit int) ([]Anomaly, error) {
	if limit < 1 {
		return nil, fmt.Errorf("%w: limit %d, want at least 1", ErrBadHistory, limit)
	}
	ivs, anomalies := BuildIntervals(events)
	return append(anomalies, CheckIntervals(ivs, limit)...), nil
}

// CheckIntervals reports, for each name:
//
//   - with limit 1, every pair of intervals that overlap (KindOverlap),
//     with the overlap's duration: the lock or the leadership was held
//     twice at once;
//   - with limit N > 1, every span during which more than N intervals
//     were in at once (KindOverLimit), with all of them;
//   - with limit 1, every interval that entered after an interval with a
//     higher token had already ended (KindTokenOrder): tokens and
//     leadership revisions grow with every grant, so the lower one was
//     running on a grant that had ended before the higher one began.
//
// Intervals that merely touch (one's end equals the next one's enter) do
// not overlap. Intervals with token 0 are left out of the token check.
func CheckIntervals(ivs []Interval, limit int) []Anomaly {
	byName := make(map[string][]Interval)
	var names []string
	for _, iv := range ivs {
		if _, ok := byName[iv.Name]; !ok {
			names = append(names, iv.Name)
		}
		byName[iv.Name] = append(byName[iv.Name], iv)
	}
	sort.Strings(names)
	var anomalies []Anomaly
	for _, name := range names {
		group := byName[name]
		sortIntervals(group)
		if limit <= 1 {
			anomalies = append(anomalies, overlaps(name, group)...)
			anomalies = append(anomalies, tokenOrder(name, group)...)
		} else {
			anomalies = append(anomalies, overLimit(name, group, limit)...)
		}
	}
	return anomalies
}

// overlaps reports each overlapping pair of intervals sorted by enter.
func overlaps(name string, ivs []Interval) []Anomaly {
	var anomalies []Anomaly
	var active []Interval
	for _, iv := range ivs {
		kept := active[:0]
		for _, a := range active {
			if a.End > iv.Enter {
				kept = append(kept, a)
			}
		}
		active = kept
		for _, a := range active {
			if d := min(a.End, iv.End) - iv.Enter; d > 0 {
				anomalies = append(anomalies, Anomaly{KindOverlap, fmt.Sprintf(
					"%s held twice for %s: %s and %s", label(name), dur(d), a, iv)})
			}
		}
		active = append(active, iv)
	}
	return anomalies
}

// overLimit sweeps the intervals' enters and ends in time order and
// reports each maximal span with more than limit intervals in. All edges
// of one instant are applied before the count is judged, so a holder
// leaving as another enters neither counts twice nor splits a span.
func overLimit(name string, ivs []Interval, limit int) []Anomaly {
	type edge struct {
		t     int64
		enter bool
		i     int
	}
	edges := make([]edge, 0, 2*len(ivs))
	for i, iv := range ivs {
		if iv.End > iv.Enter {
			edges = append(edges, edge{iv.Enter, true, i}, edge{iv.End, false, i})
		}
	}
	sort.SliceStable(edges, func(a, b int) bool {
		if edges[a].t != edges[b].t {
			return edges[a].t < edges[b].t
		}
		return !edges[a].enter && edges[b].enter
	})

	var anomalies []Anomaly
	in := make(map[int]bool)
	var (
		start   int64
		peak    int
		members map[int]bool
	)
	for k, e := range edges {
		if e.enter {
			in[e.i] = true
		} else {
			delete(in, e.i)
		}
		if k+1 < len(edges) && edges[k+1].t == e.t {
			continue // judge an instant once all its edges are in
		}
		switch {
		case len(in) > limit && members == nil:
			start, peak, members = e.t, 0, make(map[int]bool)
			fallthrough
		case len(in) > limit:
			peak = max(peak, len(in))
			for i := range in {
				members[i] = true
			}
		case members != nil:
			idx := make([]int, 0, len(members))
			for i := range members {
				idx = append(idx, i)
			}
			sort.Ints(idx)
			parts := make([]string, len(idx))
			for n, i := range idx {
				parts[n] = ivs[i].String()
			}
			anomalies = append(anomalies, Anomaly{KindOverLimit, fmt.Sprintf(
				"%s held by %d at once (limit %d) from %s for %s: %s",
				label(name), peak, limit, stamp(start), dur(e.t-start), strings.Join(parts, "; "))})
			members = nil
		}
	}
	return anomalies
}

// tokenOrder reports each interval that entered after a higher-token
// interval had ended (the overlapping case is an overlap already).
func tokenOrder(name string, ivs []Interval) []Anomaly {
	var anomalies []Anomaly
	for j, iv := range ivs {
		if iv.Token == 0 {
			continue
		}
		var worst *Interval
		for i := range ivs[:j] {
			a := &ivs[i]
			if a.Token > iv.Token && a.End <= iv.Enter && (worst == nil || a.Token > worst.Token) {
				worst = a
			}
		}
		if worst != nil {
			anomalies = append(anomalies, Anomaly{KindTokenOrder, fmt.Sprintf(
				"%s: token %d ran after token %d had ended: %s after %s",
				label(name), iv.Token, worst.Token, iv, *worst)})
		}
	}
	return anomalies
}

func label(name string) string {
	if name == "" {
		return "the unnamed lock or election"
	}
	return fmt.Sprintf("%q", name)
}
