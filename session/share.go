package session

import "context"

// DefaultMaxSessionsPerOwner is an owner's share of the agent's sessions:
// a quarter of DefaultMaxSessions, so that one ACL token opening sessions
// in a loop leaves three quarters of the pool to everyone else.
const DefaultMaxSessionsPerOwner = DefaultMaxSessions / 4

// WithOwner tells the manager who opens a session: owner answers, from
// an Open's context, the name its share is counted under ("" for a caller
// that has no share of its own and is bounded by max-sessions alone: the
// agent itself, the host's operator, everyone with ACLs off). The agent
// passes the ACL token's accessor id, never its secret; the name is shown
// in the refusal.
func WithOwner(owner func(ctx context.Context) string) ManagerOption {
	return func(m *Manager) { m.ownerOf = owner }
}

// WithMaxSessionsPerOwner sets how many sessions one owner (see
// WithOwner) may have open at once (n <= 0: DefaultMaxSessionsPerOwner).
func WithMaxSessionsPerOwner(n int) ManagerOption {
	return func(m *Manager) {
		if n > 0 {
			m.maxPerOwner = n
		}
	}
}

// owner is who opens a session with ctx; "" without a share.
func (m *Manager) owner(ctx context.Context) string {
	if m.ownerOf == nil {
		return ""
	}
	return m.ownerOf(ctx)
}

// takeShare counts a session against its owner's share, or refuses it;
// m.mu is held. A session is counted from its Open's check to its end.
func (m *Manager) takeShare(owner string) error {
	if owner == "" {
		return nil
	}
	if m.perOwner[owner] >= m.maxPerOwner {
		return tooManySessionsForOwner(owner, m.maxPerOwner)
	}
	m.perOwner[owner]++
	return nil
}

// giveShare gives back what takeShare counted; m.mu is held.
func (m *Manager) giveShare(owner string) {
	if owner == "" {
		return
	}
	if m.perOwner[owner]--; m.perOwner[owner] <= 0 {
		delete(m.perOwner, owner)
	}
}

// OwnerCount is how many sessions owner has open on the agent.
func (m *Manager) OwnerCount(owner string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.perOwner[owner]
}
