package dataquota

import (
	"github.com/beaconhq/beacon/internal/metrics"
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics is the guard's collector for the agent's /metrics: the
// backend's use and size by the last reading, the two lines, and the
// writes refused at each.
func (g *Guard) Metrics() prometheus.Collector {
	refused := func(line string, f func() float64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "beacon_data_quota_refused_total",
			Help:        "Writes refused because etcd's backend reached a line of the data quota (data: data-quota-percent; client: client-quota-percent; share: near a line, past this agent's share of the room left after waiting for readings).",
			ConstLabels: prometheus.Labels{"line": line}}, f)
	}
	return metrics.Collectors{
		metrics.Gauge("beacon_data_quota_in_use_bytes", "etcd backend bytes in use by the data quota's last reading.",
			func() float64 { return float64(g.sizes().inUse) }),
		metrics.Gauge("beacon_data_quota_size_bytes", "etcd backend size (its high-water mark, which etcd's quota judges) by the data quota's last reading.",
			func() float64 { return float64(g.sizes().size) }),
		metrics.Gauge("beacon_data_quota_limit_bytes", "Bytes of etcd's backend in use past which writes of data are refused (data-quota-percent of the quota; 0 before the first reading).",
			func() float64 { return float64(g.Limit()) }),
		metrics.Gauge("beacon_data_quota_client_limit_bytes", "Bytes of etcd's backend past which every write of a client's call is refused, deletes excepted (client-quota-percent of the quota).",
			func() float64 { return float64(g.ClientLimit()) }),
		refused("data", func() float64 { return float64(g.refusedData.Load()) }),
		refused("client", func() float64 { return float64(g.refusedClient.Load()) }),
		refused("share", func() float64 { return float64(g.refusedShare.Load()) }),
	}
}

type sizes struct{ inUse, size int64 }

// sizes is the last reading's.
func (g *Guard) sizes() sizes {
	g.mu.Lock()
	defer g.mu.Unlock()
	return sizes{g.inUse, g.size}
}
