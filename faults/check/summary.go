package check

import (
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
)

// ErrAnomalies is what every Summary.Err wraps, so a test can tell "the
// system misbehaved" (errors.Is(err, ErrAnomalies)) from a harness failure.
var ErrAnomalies = errors.New("anomalies found")

// Summary is the common report of one workload run: what was attempted,
// what the faults were, and what the checkers found. Every workload fills
// one, so that all runs read alike and fail alike.
type Summary struct {
	Workload string

	// Operations by outcome. Attempted counts them all; Record keeps the
	// four consistent.
	Attempted, OK, Failed, Indeterminate int

	// Faults injected, by kind ("kill", "partition", "pause", ...).
	Faults map[string]int

	Anomalies []Anomaly
}

// Record counts one attempted operation with its outcome (anything but
// OK or Failed counts as indeterminate).
func (s *Summary) Record(o Outcome) {
	s.Attempted++
	switch o {
	case OK:
		s.OK++
	case Failed:
		s.Failed++
	default:
		s.Indeterminate++
	}
}

// Fault counts one injected fault of the given kind.
func (s *Summary) Fault(kind string) {
	if s.Faults == nil {
		s.Faults = make(map[string]int)
	}
	s.Faults[kind]++
}

// Add appends anomalies found by a checker.
func (s *Summary) Add(a ...Anomaly) { s.Anomalies = append(s.Anomalies, a...) }

// Print writes the summary as an aligned two-column table, faults sorted by
// kind, then one row per anomaly.
func (s *Summary) Print(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintf(tw, "workload\t%s\n", s.Workload)
	fmt.Fprintf(tw, "operations attempted\t%d\n", s.Attempted)
	fmt.Fprintf(tw, "  ok\t%d\n", s.OK)
	fmt.Fprintf(tw, "  failed\t%d\n", s.Failed)
	fmt.Fprintf(tw, "  indeterminate\t%d\n", s.Indeterminate)
	kinds := make([]string, 0, len(s.Faults))
	total := 0
	for k, n := range s.Faults {
		kinds = append(kinds, k)
		total += n
	}
	sort.Strings(kinds)
	fmt.Fprintf(tw, "faults injected\t%d\n", total)
	for _, k := range kinds {
		fmt.Fprintf(tw, "  %s\t%d\n", k, s.Faults[k])
	}
	fmt.Fprintf(tw, "anomalies\t%d\n", len(s.Anomalies))
	for _, a := range s.Anomalies {
		fmt.Fprintf(tw, "  %s\t%s\n", a.Kind, oneLine(a.Text))
	}
	return tw.Flush()
}

// Err returns nil when no anomaly was found, and otherwise an
// *AnomaliesError naming every one of them.
func (s *Summary) Err() error {
	if len(s.Anomalies) == 0 {
		return nil
	}
	return &AnomaliesError{Workload: s.Workload, Anomalies: append([]Anomaly(nil), s.Anomalies...)}
}

// AnomaliesError carries the anomalies of a run; it unwraps to ErrAnomalies.
type AnomaliesError struct {
	Workload  string
	Anomalies []Anomaly
}

func (e *AnomaliesError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "workload %s: %d %s", e.Workload, len(e.Anomalies), plural(len(e.Anomalies), "anomaly", "anomalies"))
	for _, a := range e.Anomalies {
		b.WriteString("; ")
		b.WriteString(oneLine(a.String()))
	}
	return b.String()
}

func (e *AnomaliesError) Unwrap() error { return ErrAnomalies }

// Count returns how many anomalies of the given kind the summary holds.
func (s *Summary) Count(k Kind) int {
	n := 0
	for _, a := range s.Anomalies {
		if a.Kind == k {
			n++
		}
	}
	return n
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
