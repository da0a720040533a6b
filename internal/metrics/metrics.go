// Package metrics holds what beacon's packages share to export their
// metrics (README, Metrics): each package builds its collectors over its
// own live state, read at scrape time, and the agent registers them in
// its registry.
package metrics

import "github.com/prometheus/client_golang/prometheus"

// Collectors is several collectors as one.
type Collectors []prometheus.Collector

// Describe implements prometheus.Collector.
func (cs Collectors) Describe(ch chan<- *prometheus.Desc) {
	for _, c := range cs {
		c.Describe(ch)
	}
}

// Collect implements prometheus.Collector.
func (cs Collectors) Collect(ch chan<- prometheus.Metric) {
	for _, c := range cs {
		c.Collect(ch)
	}
}

// Gauge is a gauge without labels whose value f reads at each scrape.
func Gauge(name, help string, f func() float64) prometheus.Collector {
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f)
}

// Counter is a counter without labels whose value f reads at each scrape
// (f must never go down).
func Counter(name, help string, f func() float64) prometheus.Collector {
	return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, f)
}
