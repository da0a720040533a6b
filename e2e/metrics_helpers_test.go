package e2e

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/beaconhq/beacon/internal/testcluster"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// scrape reads an agent's /metrics.
func scrape(a *testcluster.Agent) (map[string]*dto.MetricFamily, error) {
	resp, err := http.Get("http://" + a.HTTPAddr + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("/metrics: %s", resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	return p.TextToMetricFamilies(resp.Body)
}

// promValue is the sample of name whose labels include those given
// (name, value pairs): a counter's or gauge's value, a histogram's count.
func promValue(mfs map[string]*dto.MetricFamily, name string, labels ...string) (float64, bool) {
	mf := mfs[name]
	if mf == nil {
		return 0, false
	}
next:
	for _, m := range mf.GetMetric() {
		for i := 0; i+1 < len(labels); i += 2 {
			found := false
			for _, lp := range m.GetLabel() {
				found = found || lp.GetName() == labels[i] && lp.GetValue() == labels[i+1]
			}
			if !found {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.GetCounter().GetValue(), true
		case m.Gauge != nil:
			return m.GetGauge().GetValue(), true
		case m.Histogram != nil:
			return float64(m.GetHistogram().GetSampleCount()), true
		}
	}
	return 0, false
}

// value is promValue of a fresh scrape; 0 for a sample not there (yet).
func value(t *testing.T, a *testcluster.Agent, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := scrape(a)
	if err != nil {
		t.Fatalf("%s: %v", a.Name, err)
	}
	v, _ := promValue(mfs, name, labels...)
	return v
}

// waitValue polls a's /metrics until the sample satisfies ok.
func waitValue(t *testing.T, a *testcluster.Agent, within time.Duration, ok func(float64) bool, what, name string, labels ...string) {
	t.Helper()
	var last float64
	err := testcluster.Eventually(within, func() error {
		mfs, err := scrape(a)
		if err != nil {
			return err
		}
		last, _ = promValue(mfs, name, labels...)
		if !ok(last) {
			return fmt.Errorf("%s%q is %v", name, labels, last)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("%s on %s: %v after %s (want %s)", name, a.Name, err, within, what)
	}
}

func equals(want float64) (func(float64) bool, string) {
	return func(v float64) bool { return v == want }, fmt.Sprint(want)
}

// expect waits for name (with labels) to be want on a.
func expect(t *testing.T, a *testcluster.Agent, want float64, name string, labels ...string) {
	t.Helper()
	ok, what := equals(want)
	waitValue(t, a, 30*time.Second, ok, what, name, labels...)
}
