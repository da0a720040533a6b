package dataquota

import (
	"github.com/beaconhq/beacon/internal/metrics"
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics is the guard's collector for the agent's /metrics: the
// backend's use by the last reading, the data share it judges by, and
// the writes it refused.
func (g *Guard) Metrics() prometheus.Collector {
	return metrics.Collectors{
		metrics.Gauge("beacon_data_quota_in_use_bytes", "etcd backend bytes in use by the data quota's last reading (the fullest endpoint).",
			func() float64 { return float64(g.inUse.Load()) }),
		metrics.Gauge("beacon_data_quota_limit_bytes", "Bytes of etcd's backend past which writes of data are refused (data-quota-percent of the quota; 0 before the first reading).",
			func() float64 { return float64(g.Limit()) }),
		metrics.Counter("beacon_data_quota_refused_total", "Writes of data refused because etcd's backend reached the data quota.",
			func() float64 { return float64(g.refused.Load()) }),
	}
}
