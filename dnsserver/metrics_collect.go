package dnsserver

import (
	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics is the server's collector of beacon_dns_queries_total and
// beacon_dns_query_duration_seconds, for the agent's /metrics.
func (s *Server) Metrics() prometheus.Collector { return s.m }

// Describe implements prometheus.Collector.
func (m *metrics) Describe(ch chan<- *prometheus.Desc) {
	ch <- m.queriesDesc
	ch <- m.durationDesc
}

// Collect implements prometheus.Collector: the shards added up.
func (m *metrics) Collect(ch chan<- prometheus.Metric) {
	var queries [otherType + 1][otherRcode + 1]uint64
	var buckets [len(transportLabels)][len(durationBuckets) + 1]uint64
	var nanos [len(transportLabels)]uint64
	m.mu.Lock()
	for _, sh := range m.shards {
		for t := range queries {
			for r := range queries[t] {
				queries[t][r] += sh.queries[t][r].Load()
			}
		}
		for tr := range buckets {
			for i := range buckets[tr] {
				buckets[tr][i] += sh.hist[tr].buckets[i].Load()
			}
			nanos[tr] += sh.hist[tr].nanos.Load()
		}
	}
	m.mu.Unlock()
	for t := range queries {
		for r, n := range queries[t] {
			if n > 0 {
				ch <- prometheus.MustNewConstMetric(m.queriesDesc, prometheus.CounterValue, float64(n), typeLabel(t), rcodeLabel(r))
			}
		}
	}
	for tr, label := range transportLabels {
		cumulative := make(map[float64]uint64, len(durationBuckets))
		var count uint64
		for i, upper := range durationBuckets {
			count += buckets[tr][i]
			cumulative[upper] = count
		}
		count += buckets[tr][len(durationBuckets)]
		ch <- prometheus.MustNewConstHistogram(m.durationDesc, count, float64(nanos[tr])/1e9, cumulative, label)
	}
}

func typeLabel(cell int) string {
	if cell == otherType {
		return "other"
	}
	return dns.TypeToString[countedTypes[cell]]
}

func rcodeLabel(cell int) string { return rcodeLabels[cell] }
