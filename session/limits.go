package session

import "github.com/prometheus/client_golang/prometheus"

// sessionsOpen is beacon_sessions_open: the sessions open in this
// process (the agent's own included).
var sessionsOpen = prometheus.NewGauge(prometheus.GaugeOpts{
	Name: "beacon_sessions_open", Help: "Sessions open on this agent, its own included."})

func init() { prometheus.MustRegister(sessionsOpen) }

// DefaultMaxSessions bounds the sessions open on one agent at once. A
// session costs the agent a few KiB and a few goroutines (see README,
// Limits); a large host runs a few hundred. The bound is there so that a
// client opening sessions in a loop exhausts its own quota, not the
// agent's memory.
const DefaultMaxSessions = 16384

// WithMaxSessions sets how many sessions may be open on the agent at once
// (n <= 0: DefaultMaxSessions).
func WithMaxSessions(n int) ManagerOption {
	return func(m *Manager) {
		if n > 0 {
			m.maxSessions = n
		}
	}
}

// reserve counts an Open against the limit before its lease is granted,
// so that Opens racing each other cannot pass it together.
// The owner's share (share.go) is counted too.
func (m *Manager) reserve(owner string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.stopping {
		return ErrStopping
	}
	if len(m.sessions)+m.opening >= m.maxSessions {
		return tooManySessions(m.maxSessions)
	}
	if err := m.takeShare(owner); err != nil {
		return err
	}
	m.opening++
	return nil
}

// OpenCount is how many sessions are open on the agent.
func (m *Manager) OpenCount() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.sessions)
}
