// Package metricstest reads what a Prometheus collector reports, for the
// tests of the packages that export beacon's metrics.
package metricstest

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// Value is the sample of metric name whose labels include those given
// (name, value pairs) that c reports now: a counter's or a gauge's value,
// a histogram's count of observations. A metric without such a sample is
// 0, as a counter that has not counted yet. c is checked as the agent's
// registry would check it (a pedantic registry: each metric described,
// consistent labels).
func Value(t testing.TB, c prometheus.Collector, name string, labels ...string) float64 {
	t.Helper()
	v, _ := Lookup(t, c, name, labels...)
	return v
}

// Wait polls c until its sample of name (with labels) satisfies ok, for
// at most within, and fails the test with the last value otherwise.
func Wait(t testing.TB, c prometheus.Collector, within time.Duration, name string, ok func(float64) bool, labels ...string) float64 {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		v := Value(t, c, name, labels...)
		if ok(v) {
			return v
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s%q is %v after %s", name, labels, v, within)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Is is Wait's test for a value.
func Is(want float64) func(float64) bool { return func(v float64) bool { return v == want } }

// AtLeast is Wait's test for a lower bound.
func AtLeast(min float64) func(float64) bool { return func(v float64) bool { return v >= min } }

// Lookup is Value, and whether the sample exists.
func Lookup(t testing.TB, c prometheus.Collector, name string, labels ...string) (float64, bool) {
	t.Helper()
	if len(labels)%2 != 0 {
		t.Fatalf("metricstest: labels %q are not name, value pairs", labels)
	}
	for _, m := range Series(t, c, name) {
		if hasLabels(m, labels) {
			return sampleValue(m), true
		}
	}
	return 0, false
}

// Series are the samples of metric name that c reports now.
func Series(t testing.TB, c prometheus.Collector, name string) []*dto.Metric {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(c); err != nil {
		t.Fatalf("metricstest: %v", err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("metricstest: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()
		}
	}
	return nil
}

// LabelValues are the values label takes in the samples of name.
func LabelValues(t testing.TB, c prometheus.Collector, name, label string) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	for _, m := range Series(t, c, name) {
		for _, lp := range m.GetLabel() {
			if lp.GetName() == label {
				out[lp.GetValue()] = true
			}
		}
	}
	return out
}

func hasLabels(m *dto.Metric, labels []string) bool {
	for i := 0; i < len(labels); i += 2 {
		found := false
		for _, lp := range m.GetLabel() {
			if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
				found = true
			}
		}
		if !found {
			return false
		}
	}
	return true
}

func sampleValue(m *dto.Metric) float64 {
	switch {
	case m.Counter != nil:
		return m.GetCounter().GetValue()
	case m.Gauge != nil:
		return m.GetGauge().GetValue()
	case m.Histogram != nil:
		return float64(m.GetHistogram().GetSampleCount())
	case m.Untyped != nil:
		return m.GetUntyped().GetValue()
	}
	return 0
}
