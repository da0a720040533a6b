package check

import (
	"sort"
	"strings"
	"testing"
)

// ms is n milliseconds after an arbitrary epoch, as a machine-clock
// timestamp in nanoseconds.
func ms(n int64) int64 { return 1_700_000_000_000_000_000 + n*1_000_000 }

// wantKinds fails unless anomalies hold exactly the given kinds, as a
// multiset: a checker that finds too little passes bad histories, one that
// finds too much fails good ones.
func wantKinds(t *testing.T, anomalies []Anomaly, kinds ...Kind) {
	t.Helper()
	got := make([]string, len(anomalies))
	for i, a := range anomalies {
		got[i] = string(a.Kind)
	}
	want := make([]string, len(kinds))
	for i, k := range kinds {
		want[i] = string(k)
	}
	sort.Strings(got)
	sort.Strings(want)
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("anomalies %v, want kinds %v", got, want)
		for _, a := range anomalies {
			t.Logf("  %s", a)
		}
	}
}

// wantText fails unless some anomaly of kind k mentions every part.
func wantText(t *testing.T, anomalies []Anomaly, k Kind, parts ...string) {
	t.Helper()
next:
	for _, a := range anomalies {
		if a.Kind != k {
			continue
		}
		for _, p := range parts {
			if !strings.Contains(a.Text, p) {
				continue next
			}
		}
		return
	}
	t.Errorf("no %s anomaly mentions all of %q; have %v", k, parts, anomalies)
}

func must[T any](t *testing.T) func(T, error) T {
	return func(v T, err error) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}
