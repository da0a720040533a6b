package faults

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"text/tabwriter"
	"time"
)

// Outcome of one operation of a workload.
type Outcome int

const (
	OK            Outcome = iota // it happened
	Failed                       // it did not happen
	Indeterminate                // no answer: it may or may not have happened
)

func (o Outcome) String() string {
	return [...]string{"ok", "failed", "indeterminate"}[o]
}

// Report gathers what a workload did: per operation, how many were
// attempted and how each ended; the faults injected meanwhile; the bounds
// measured; and anomalies — anything a checker found wrong. Finish prints
// it as a table and fails the test for each anomaly.
type Report struct {
	Name string
	h    *Harness

	start     time.Time
	faultFrom int

	mu        sync.Mutex
	order     []string
	ops       map[string]*[3]int
	measures  []string
	notes     []string
	anomalies []string       // distinct messages, first-seen time first
	repeats   map[string]int // message -> times seen
	firstSeen map[string]time.Time
	nAnomaly  int
}

// NewReport starts a report; faults injected from now on are counted in it.
func (h *Harness) NewReport(name string) *Report {
	return &Report{Name: name, h: h, start: time.Now(), faultFrom: len(h.FaultLog()), ops: map[string]*[3]int{},
		repeats: map[string]int{}, firstSeen: map[string]time.Time{}}
}

// Record counts one operation's outcome.
func (r *Report) Record(op string, o Outcome) {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := r.ops[op]
	if c == nil {
		c = &[3]int{}
		r.ops[op] = c
		r.order = append(r.order, op)
	}
	c[o]++
}

// Count is how many op ended with o so far.
func (r *Report) Count(op string, o Outcome) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	if c := r.ops[op]; c != nil {
		return c[o]
	}
	return 0
}

// Anomaly records something a checker found wrong; it fails the test at
// Finish. It is also written to the event log.
func (r *Report) Anomaly(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	r.h.events.Record("anomaly", r.Name, msg)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.nAnomaly++
	if r.repeats[msg] == 0 {
		r.anomalies = append(r.anomalies, msg)
		r.firstSeen[msg] = time.Now()
	}
	r.repeats[msg]++
}

// Anomalies so far, each distinct message once.
func (r *Report) Anomalies() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string{}, r.anomalies...)
}

// Measure records a measured duration and its bound; over the bound is an
// anomaly. It returns whether d was within the bound.
func (r *Report) Measure(what string, d, bound time.Duration) bool {
	ok := d <= bound
	mark := "ok"
	if !ok {
		mark = "OVER"
		r.Anomaly("%s took %s, over its bound %s", what, d.Round(time.Millisecond), bound)
	}
	r.mu.Lock()
	r.measures = append(r.measures, fmt.Sprintf("%s: %s (bound %s, %s)", what, d.Round(time.Millisecond), bound, mark))
	r.mu.Unlock()
	return ok
}

// Note adds a line to the report.
func (r *Report) Note(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.notes = append(r.notes, fmt.Sprintf(format, args...))
}

// String is the report as printed.
func (r *Report) String() string {
	faults := r.h.FaultLog()[r.faultFrom:]
	r.mu.Lock()
	defer r.mu.Unlock()
	var b strings.Builder
	fmt.Fprintf(&b, "workload %s: %s\n", r.Name, time.Since(r.start).Round(100*time.Millisecond))
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "operation\tattempted\tok\tfailed\tindeterminate\t")
	var tot [3]int
	for _, op := range r.order {
		c := r.ops[op]
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t\n", op, c[0]+c[1]+c[2], c[0], c[1], c[2])
		for i := range tot {
			tot[i] += c[i]
		}
	}
	fmt.Fprintf(tw, "total\t%d\t%d\t%d\t%d\t\n", tot[0]+tot[1]+tot[2], tot[0], tot[1], tot[2])
	tw.Flush()
	fmt.Fprintf(&b, "faults injected: %d\n", len(faults))
	for _, f := range faults {
		fmt.Fprintf(&b, "  %s\n", f)
	}
	if len(r.measures) > 0 {
		fmt.Fprintf(&b, "measured:\n")
		for _, m := range r.measures {
			fmt.Fprintf(&b, "  %s\n", m)
		}
	}
	for _, n := range r.notes {
		fmt.Fprintf(&b, "note: %s\n", n)
	}
	fmt.Fprintf(&b, "anomalies: %d (%d distinct)\n", r.nAnomaly, len(r.anomalies))
	for i, a := range r.anomalies {
		if i == 30 {
			fmt.Fprintf(&b, "  … %d more (all in the harness's events/anomaly.events)\n", len(r.anomalies)-30)
			break
		}
		times := ""
		if n := r.repeats[a]; n > 1 {
			times = fmt.Sprintf(" (×%d)", n)
		}
		fmt.Fprintf(&b, "  %s %s%s\n", r.firstSeen[a].Format("15:04:05.000"), a, times)
	}
	return b.String()
}

// Finish logs the table and fails the test if there was any anomaly.
func (r *Report) Finish(t testing.TB) {
	t.Helper()
	t.Log("\n" + r.String())
	r.mu.Lock()
	n := r.nAnomaly
	r.mu.Unlock()
	if n > 0 {
		t.Errorf("workload %s: %d anomalies (see the table above)", r.Name, n)
	}
}
