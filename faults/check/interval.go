package check

import (
	"fmt"
	"sort"
)

// EndKind says how an Interval's end is known.
type EndKind string

// How an interval ended.
const (
	// Exited: CMD logged its exit.
	Exited EndKind = "exit"
	// Killed: CMD never logged an exit; a Dead event says it was dead by
	// End. The real end may be earlier, so End is an upper bound and any
	// overlap found with it is a possible, not a proven, one: the workload
	// should write Dead events as soon as it knows.
	Killed EndKind = "dead"
	// Open: neither an exit nor a Dead event; the interval is taken to
	// last until the last event of the history, the worst case.
	Open EndKind = "open"
)

// An Interval is one holder's run of CMD, from its enter event to its
// exit, its death, or the end of the history.
type Interval struct {
	Name  string
	Host  string
	PID   int
	PPID  int
	Token int64
	Enter int64
	End   int64
	How   EndKind

	// Source is where the enter event was read (file:line).
	Source string
}

func (iv Interval) String() string {
	s := fmt.Sprintf("%s pid %d", iv.Host, iv.PID)
	if iv.Token != 0 {
		s += fmt.Sprintf(" token %d", iv.Token)
	}
	s += fmt.Sprintf(" [%s, %s %s]", stamp(iv.Enter), stamp(iv.End), iv.How)
	if iv.Source != "" {
		s += " (" + iv.Source + ")"
	}
	return s
}

type holderKey struct {
	name, host string
	pid        int
	token      int64
}

// BuildIntervals pairs enter and exit events into intervals, in the order
// of their times. An interval without an exit ends at the first Dead event
// that matches it (same host, and same pid or ppid, name and token where
// the Dead event gives them), or else at the last event of the history.
// Events that do not pair up are returned as KindMalformed anomalies: an
// exit without an enter, or a second enter of a holder that is still in.
// Intervals come back sorted by enter time.
func BuildIntervals(events []Event) ([]Interval, []Anomaly) {
	evs := append([]Event(nil), events...)
	sort.SliceStable(evs, func(i, j int) bool { return evs[i].Time < evs[j].Time })

	var (
		done      []Interval
		anomalies []Anomaly
		last      int64
	)
	open := make(map[holderKey]*Interval)
	for _, e := range evs {
		last = max(last, e.Time)
		switch e.Kind {
		case Enter:
			k := holderKey{e.Name, e.Host, e.PID, e.Token}
			if iv, ok := open[k]; ok {
				anomalies = append(anomalies, Anomaly{KindMalformed, fmt.Sprintf(
					"second enter at %s (%s) of a holder still in since %s (%s)", stamp(e.Time), e.Source, stamp(iv.Enter), iv.Source)})
				continue
			}
			open[k] = &Interval{Name: e.Name, Host: e.Host, PID: e.PID, PPID: e.PPID, Token: e.Token,
				Enter: e.Time, Source: e.Source}
		case Exit:
			k := holderKey{e.Name, e.Host, e.PID, e.Token}
			iv, ok := open[k]
			if !ok {
				anomalies = append(anomalies, Anomaly{KindMalformed, fmt.Sprintf(
					"exit without enter: %s pid %d token %d name %q at %s (%s)", e.Host, e.PID, e.Token, e.Name, stamp(e.Time), e.Source)})
				continue
			}
			iv.End, iv.How = e.Time, Exited
			done = append(done, *iv)
			delete(open, k)
		case Dead:
			for k, iv := range open {
				if deadMatches(e, iv) {
					iv.End, iv.How = e.Time, Killed
					done = append(done, *iv)
					delete(open, k)
				}
			}
		}
	}
	for _, iv := range open {
		iv.End, iv.How = last, Open
		done = append(done, *iv)
	}
	sortIntervals(done)
	return done, anomalies
}

func deadMatches(e Event, iv *Interval) bool {
	return e.Host == iv.Host &&
		(e.PID == 0 || e.PID == iv.PID || e.PID == iv.PPID) &&
		(e.Name == "" || e.Name == iv.Name) &&
		(e.Token == 0 || e.Token == iv.Token)
}

// sortIntervals orders by enter time, then by the rest, so that reports
// do not depend on map order.
func sortIntervals(ivs []Interval) {
	sort.Slice(ivs, func(i, j int) bool {
		a, b := ivs[i], ivs[j]
		switch {
		case a.Enter != b.Enter:
			return a.Enter < b.Enter
		case a.End != b.End:
			return a.End < b.End
		case a.Host != b.Host:
			return a.Host < b.Host
		case a.PID != b.PID:
			return a.PID < b.PID
		default:
			return a.Token < b.Token
		}
	})
}
