package lock

import (
	"github.com/beaconhq/beacon/internal/metrics"
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics is the service's collector for the agent's /metrics:
// beacon_lock_waiters (Acquire calls of this agent waiting for their
// turn) and beacon_lock_grants_total (locks this agent granted, by
// Acquire or TryAcquire).
func (s *Service) Metrics() prometheus.Collector {
	return metrics.Collectors{
		metrics.Gauge("beacon_lock_waiters", "Acquire calls on this agent waiting for their lock.",
			func() float64 { return float64(s.waiting.Load()) }),
		metrics.Counter("beacon_lock_grants_total", "Locks granted through this agent.",
			func() float64 { return float64(s.granted.Load()) }),
	}
}
