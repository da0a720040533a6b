package election

import (
	"github.com/beaconhq/beacon/internal/metrics"
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics is the service's collector for the agent's /metrics:
// beacon_elections_led, the elections whose leader is a session of this
// agent (won by Campaign here, until it resigns, its session ends or its
// lease changes, or WatchLeadership finds it lost). Summed over the
// agents, the elections with a leader.
func (s *Service) Metrics() prometheus.Collector {
	return metrics.Gauge("beacon_elections_led", "Elections led by a session of this agent.", func() float64 {
		s.mu.Lock()
		defer s.mu.Unlock()
		return float64(len(s.led))
	})
}

// won records a leadership won through this service.
func (s *Service) won(key, session string) {
	s.mu.Lock()
	s.led[key] = session
	s.mu.Unlock()
}

// ended forgets a leadership resigned or found lost.
func (s *Service) ended(key string) {
	s.mu.Lock()
	delete(s.led, key)
	s.mu.Unlock()
}

// forgetLocked forgets the leaderships of a session that ended or
// changed its lease (its keys are gone from etcd, or going).
func (s *Service) forgetLocked(session string) {
	for k, id := range s.led {
		if id == session {
			delete(s.led, k)
		}
	}
}
