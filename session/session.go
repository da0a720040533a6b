// Package session is the agent's side of application sessions: each one an
// etcd lease the agent owns and keeps alive for as long as the
// application's stream to the agent lives. Everything an application holds
// (registrations, locks, leaderships, reservations) is bound to it, so an
// application's death frees them at once instead of after a TTL.
package session

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// Limits on a session's TTL, which matters only when the agent dies.
const (
	DefaultTTL = 10 * time.Second
	MaxTTL     = 24 * time.Hour
)

// Session is one lease kept alive by the agent.
type Session struct {
	ID   string
	Name string
	TTL  time.Duration

	owner string // whose share it counts against (WithOwner); "" for none

	m      *Manager
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}

	mu            sync.Mutex
	lease         clientv3.LeaseID
	onLeaseChange []func(old, new clientv3.LeaseID)
	onClose       []func()
	// holding: the session holds or contends for something, or its client
	// asked for confirmations. When the agent stops, such a session's lease
	// is left to expire, unless its client closes it in time, rather than
	// revoked under a holder that may still be acting.
	holding bool
}

// Lease is the etcd lease currently behind the session.
func (s *Session) Lease() clientv3.LeaseID {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lease
}

// Done is closed when the session has ended and its lease is revoked.
func (s *Session) Done() <-chan struct{} { return s.done }

// Context ends with the session.
func (s *Session) Context() context.Context { return s.ctx }

// OnLeaseChange registers f to run when etcd ended the lease (it expired
// during a partition) and the agent granted a new one. What was bound to
// the old lease is gone from etcd; f may write it back under the new one.
func (s *Session) OnLeaseChange(f func(old, new clientv3.LeaseID)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.onLeaseChange = append(s.onLeaseChange, f)
}

// OnClose registers f to run once the session ends.
func (s *Session) OnClose(f func()) {
	s.mu.Lock()
	closed := s.ctx.Err() != nil
	if !closed {
		s.onClose = append(s.onClose, f)
	}
	s.mu.Unlock()
	if closed {
		f()
	}
}

// Close revokes the lease, so everything bound to it is released in
// etcd at once, and ends the session.
func (s *Session) Close() { s.end(true) }

// Abandon ends the session without revoking its lease, which expires
// after its TTL. The agent abandons the sessions of holders that did not
// close in time while it stops: their deadlines, on their own clocks, pass
// before the lease can expire, so nobody else is granted what they hold
// while they may still act on it.
func (s *Session) Abandon() { s.end(false) }

func (s *Session) end(revoke bool) {
	s.mu.Lock()
	if s.ctx.Err() != nil {
		s.mu.Unlock()
		<-s.done
		return
	}
	s.cancel()
	lease := s.lease
	hooks := s.onClose
	s.onClose = nil
	s.mu.Unlock()

	if revoke {
		s.m.revoke(lease, s.ID, s.TTL)
	}
	s.m.forget(s)
	for _, f := range hooks {
		f()
	}
	close(s.done)
}

// MarkHolding records that the session holds (or contends for) a lock, a
// leadership or a reservation: when the agent stops, its lease is not
// revoked under a holder that may still be acting (see CloseAll).
func (s *Session) MarkHolding() {
	s.mu.Lock()
	s.holding = true
	s.mu.Unlock()
}

// Holding reports whether the session holds something or its client asked
// for confirmations.
func (s *Session) Holding() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.holding
}

// Confirm proves the session's lease alive: it sends a keepalive now and
// returns the lease and the TTL etcd set with it once etcd acknowledged
// it. Since the keepalive left after Confirm was called, the lease lives
// at least until the caller's time of asking + ttl. A lease etcd no longer
// has answers ttl 0 (with no error): what was held under it is gone.
func (s *Session) Confirm(ctx context.Context) (clientv3.LeaseID, time.Duration, error) {
	// Confirming alone does not make a holder: every SDK session confirms,
	// and one that only registers must be revoked at once when the agent
	// stops. The lock, election and queue services mark holders.
	s.mu.Lock()
	lease := s.lease
	s.mu.Unlock()
	if s.ctx.Err() != nil {
		return lease, 0, ErrClosed
	}
	resp, err := s.m.confirmCli.KeepAliveOnce(ctx, lease)
	switch {
	case errors.Is(err, rpctypes.ErrLeaseNotFound):
		return lease, 0, nil
	case err != nil:
		return lease, 0, err
	case resp.TTL <= 0:
		return lease, 0, nil
	}
	return lease, time.Duration(resp.TTL) * time.Second, nil
}

// keepAlive keeps the lease alive; when etcd ends it, it grants a new one
// and tells the hooks.
func (s *Session) keepAlive() {
	backoff := 100 * time.Millisecond
	for s.ctx.Err() == nil {
		lease := s.Lease()
		// Renewals run through the manager's client (in-process for a
		// member); the hedges that stand in for an overdue one take fresh
		// streams, so they go through the socket client (confirmCli), like
		// confirmations.
		err := KeepLease(s.ctx, s.m.cli, s.m.confirmCli, lease, s.TTL)
		if s.ctx.Err() != nil {
			return
		}
		if !errors.Is(err, ErrLeaseGone) {
			// The client is closing: the agent is stopping.
			s.sleep(&backoff)
			continue
		}
		// etcd ended the lease (it expired, e.g. in a partition longer
		// than the TTL): a new one takes its place.
		newLease, err := s.m.grant(s.ctx, s.TTL)
		if err != nil {
			s.sleep(&backoff)
			continue
		}
		backoff = 100 * time.Millisecond
		if testHookLeaseGranted != nil {
			testHookLeaseGranted(s, newLease)
		}
		s.mu.Lock()
		if s.ctx.Err() != nil {
			// Closed while the grant was in flight: Close revoked the old
			// lease and nothing may live on under the new one.
			s.mu.Unlock()
			s.m.revoke(newLease, s.ID, s.TTL)
			return
		}
		s.lease = newLease
		hooks := append([]func(old, new clientv3.LeaseID){}, s.onLeaseChange...)
		s.mu.Unlock()
		s.m.lg.Warn("session lease ended; granted a new one", zap.String("name", s.Name),
			zap.String("old", fmt.Sprintf("%x", lease)), zap.String("new", fmt.Sprintf("%x", newLease)))
		for _, f := range hooks {
			f(lease, newLease)
		}
	}
}

// testHookLeaseGranted, when set by a test, runs between the grant of a
// replacement lease and its adoption: the window a Close can fall into.
var testHookLeaseGranted func(s *Session, lease clientv3.LeaseID)

// ErrLeaseGone: etcd no longer has the lease; it expired or was revoked.
var ErrLeaseGone = errors.New("the lease is gone")

// KeepLease keeps lease, granted with ttl, alive until ctx ends (it
// returns ctx's error), etcd answers that the lease is gone
// (ErrLeaseGone), or a client is closed.
//
// The renewals go over cli's keepalive stream (clientv3's KeepAlive: one
// every third of the TTL). That stream runs to one member, and a renewal
// on it can hang longer than a short TTL lasts: when the link to the
// member is cut silently, until the connection is found dead (about 2 s,
// see embedded's newClient); when the member is a follower whose leader
// was cut off, for as long as etcd lets the renewal it forwards to that
// leader wait (up to its request timeout, 7 s; in practice the peer
// connection's 5 s read timeout), even after a new leader is elected.
// So once an answer is overdue, KeepLease renews on fresh streams of
// hedge as well: as many at once as hedge has endpoints, which its
// round-robin puts on different connections, and each of which asks the
// member for the leader anew. It does so round after round until one is
// answered. When clientv3 gives up on the lease (no answer within the
// TTL, or etcd said it expired), KeepLease asks the same way until etcd
// answers, and goes on with a new stream if the lease lives.
func KeepLease(ctx context.Context, cli, hedge *clientv3.Client, lease clientv3.LeaseID, ttl time.Duration) error {
	k := &leaseKeeper{cli: cli, hedge: hedge, lease: lease, ttl: ttl, renewed: time.Now(), gap: minHedgeGap}
	return k.run(ctx)
}

const (
	// renewSlack: how late an answer on the stream may be before it is
	// overdue. clientv3 sends a renewal a third of the TTL after the last
	// answer, looking every 500 ms.
	renewSlack = 600 * time.Millisecond
	// A hedge round waits a third of the TTL for an answer, within these.
	minHedgeWait = 500 * time.Millisecond
	maxHedgeWait = 2 * time.Second
	// Rounds start at least minHedgeGap apart, up to maxHedgeGap while
	// they fail at once (a closing client).
	minHedgeGap = 250 * time.Millisecond
	maxHedgeGap = 2 * time.Second
	// maxHedges bounds the streams of one round.
	maxHedges = 7
)

// leaseKeeper is KeepLease's state; one goroutine uses it.
type leaseKeeper struct {
	cli, hedge *clientv3.Client
	lease      clientv3.LeaseID
	ttl        time.Duration
	renewed    time.Time // when the last answered renewal was answered (stream) or sent (hedge)

	round   chan renewal // the hedge round in flight; nil if none
	started time.Time    // when the last round started
	gap     time.Duration
}

// renewal is a hedge round's outcome: etcd's answer to the first renewal
// answered (ttl 0: the lease is gone), or the last error.
type renewal struct {
	sent time.Time
	ttl  int64
	err  error
}

func (k *leaseKeeper) run(ctx context.Context) error {
	// Ending ctx takes this call's channel off clientv3's keepalive, and
	// ends a round in flight.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ch, err := k.cli.KeepAlive(ctx, k.lease)
	if err != nil {
		return k.stopped(ctx, err)
	}
	timer := time.NewTimer(k.overdue())
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case resp, ok := <-ch:
			if !ok {
				// clientv3 gave up on the lease: etcd answered that it
				// expired, or nothing came within the TTL. Ask.
				if ctx.Err() != nil {
					return ctx.Err()
				}
				ch = nil
				break
			}
			k.renewedAt(time.Now(), resp.TTL)
		case r := <-k.round:
			k.round = nil
			switch {
			case r.err == nil && r.ttl <= 0:
				return ErrLeaseGone
			case r.err == nil:
				k.renewedAt(r.sent, r.ttl)
				k.gap = minHedgeGap
				if ch == nil {
					if ch, err = k.cli.KeepAlive(ctx, k.lease); err != nil {
						return k.stopped(ctx, err)
					}
				}
			default:
				if err := k.stopped(ctx, nil); err != nil {
					return err
				}
				if time.Since(r.sent) < minHedgeWait/2 {
					// Failed at once: do not spin.
					k.gap = min(2*k.gap, maxHedgeGap)
				}
			}
		case <-timer.C:
		}
		if k.round != nil {
			continue // its answer, or its timeout, wakes the loop
		}
		next := k.started.Add(k.gap)
		if ch != nil {
			next = latest(next, k.renewed.Add(k.overdue()))
		}
		if wait := time.Until(next); wait > 0 {
			timer.Reset(wait)
			continue
		}
		k.startRound(ctx)
	}
}

// overdue is how long after the last renewal an answer is overdue.
func (k *leaseKeeper) overdue() time.Duration { return k.ttl/3 + renewSlack }

func (k *leaseKeeper) renewedAt(t time.Time, ttl int64) {
	if t.After(k.renewed) {
		k.renewed = t
	}
	if ttl > 0 {
		k.ttl = time.Duration(ttl) * time.Second
	}
}

// stopped returns ctx's error, or an error if either client is closed,
// else nil (err, if not nil, is only reported along).
func (k *leaseKeeper) stopped(ctx context.Context, err error) error {
	switch {
	case ctx.Err() != nil:
		return ctx.Err()
	case k.cli.Ctx().Err() != nil || k.hedge.Ctx().Err() != nil:
		return fmt.Errorf("keeping lease %x alive: the etcd client is closed", k.lease)
	case err != nil:
		return fmt.Errorf("keeping lease %x alive: %w", k.lease, err)
	}
	return nil
}

// startRound renews the lease on fresh streams, one per endpoint of
// hedge at once; the round ends with the first answer, or when all
// failed or hedgeWait passed.
func (k *leaseKeeper) startRound(ctx context.Context) {
	n := min(max(len(k.hedge.Endpoints()), 1), maxHedges)
	wait := min(max(k.ttl/3, minHedgeWait), maxHedgeWait)
	rctx, cancel := context.WithTimeout(ctx, wait)
	answers := make(chan renewal, n)
	for range n {
		go func() {
			r := renewal{sent: time.Now()}
			resp, err := k.hedge.KeepAliveOnce(rctx, k.lease)
			switch {
			case errors.Is(err, rpctypes.ErrLeaseNotFound):
			case err != nil:
				r.err = err
			default:
				r.ttl = resp.TTL
			}
			answers <- r
		}()
	}
	out := make(chan renewal, 1)
	k.round, k.started = out, time.Now()
	go func() {
		defer cancel()
		var r renewal
		for range n {
			if r = <-answers; r.err == nil {
				break
			}
		}
		out <- r
	}()
}

func latest(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func (s *Session) sleep(backoff *time.Duration) {
	select {
	case <-s.ctx.Done():
	case <-time.After(*backoff):
	}
	if *backoff < 2*time.Second {
		*backoff *= 2
	}
}

// Manager holds this agent's open sessions.
type Manager struct {
	cli        *clientv3.Client
	confirmCli *clientv3.Client // for Confirm's keepalives
	lg         *zap.Logger

	mu       sync.Mutex
	sessions map[string]*Session
	stopping bool
	stopped  chan struct{} // closed when stopping is set
	stopWait time.Duration // how long CloseAll waits for holders

	revokeSlots chan struct{} // one per revoke at etcd (maxRevokesInFlight)
	maxSessions int           // open at once, those being opened included
	opening     int           // Opens between their check and their entry

	ownerOf     func(context.Context) string // see WithOwner
	maxPerOwner int                          // one owner's share
	perOwner    map[string]int               // open or being opened, per owner
}

// ManagerOption configures NewManager.
type ManagerOption func(*Manager)

// WithConfirmClient sends the keepalives that answer confirmations through
// c instead (a socket client of the agent's own member): each is a stream
// of its own, and a client may ask often, so they must not go through the
// in-process transport, whose streams deadlock when opened and closed
// quickly (etcd-io/etcd#18879).
func WithConfirmClient(c *clientv3.Client) ManagerOption {
	return func(m *Manager) { m.confirmCli = c }
}

// WithLogger sets the logger (default none).
func WithLogger(lg *zap.Logger) ManagerOption { return func(m *Manager) { m.lg = lg } }

// NewManager returns a manager whose leases live in cli's cluster.
func NewManager(cli *clientv3.Client, opts ...ManagerOption) *Manager {
	m := &Manager{cli: cli, confirmCli: cli, lg: zap.NewNop(), sessions: map[string]*Session{}, stopped: make(chan struct{}),
		revokeSlots: make(chan struct{}, maxRevokesInFlight), maxSessions: DefaultMaxSessions,
		maxPerOwner: DefaultMaxSessionsPerOwner, perOwner: map[string]int{}}
	for _, o := range opts {
		o(m)
	}
	return m
}

// Open grants a lease and keeps it alive until Close.
func (m *Manager) Open(ctx context.Context, name string, ttl time.Duration) (*Session, error) {
	if ttl == 0 {
		ttl = DefaultTTL
	}
	if ttl < time.Second || ttl > MaxTTL {
		return nil, fmt.Errorf("ttl %s is not from 1s to 24h", ttl)
	}
	// etcd's leases have whole seconds: the session's TTL is the one granted.
	ttl = (ttl + time.Second - 1) / time.Second * time.Second
	owner := m.owner(ctx)
	if err := m.reserve(owner); err != nil {
		return nil, err
	}
	lease, err := m.grant(ctx, ttl)
	if err != nil {
		m.mu.Lock()
		m.opening--
		m.giveShare(owner)
		m.mu.Unlock()
		return nil, err
	}
	sctx, cancel := context.WithCancel(context.Background())
	s := &Session{ID: newID(), Name: name, TTL: ttl, owner: owner, m: m, ctx: sctx, cancel: cancel, done: make(chan struct{}), lease: lease}
	m.mu.Lock()
	m.opening--
	if m.stopping {
		m.giveShare(owner)
		m.mu.Unlock()
		cancel()
		m.revoke(lease, "", ttl)
		return nil, ErrStopping
	}
	m.sessions[s.ID] = s
	sessionsOpen.Inc()
	m.mu.Unlock()
	go s.keepAlive()
	return s, nil
}

func (m *Manager) grant(ctx context.Context, ttl time.Duration) (clientv3.LeaseID, error) {
	gctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	resp, err := m.cli.Grant(gctx, int64(ttl/time.Second)) // whole seconds (Open)
	if err != nil {
		return 0, err
	}
	return resp.ID, nil
}

// Get returns an open session.
func (m *Manager) Get(id string) (*Session, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s, ok := m.sessions[id]
	if !ok {
		return nil, fmt.Errorf("%w: %q is not open on this agent", ErrNotFound, id)
	}
	return s, nil
}

// CloseAll ends every session and opens no new one: the agent is
// stopping, so what its applications hold must not linger for a TTL.
// Sessions whose clients hold something under their own deadlines (they
// asked for confirmations) are told through Stopping and get up to wait
// to close themselves (stopping what they run first); those still open
// then are abandoned to expire after their TTL, since their holders may
// still be acting. Every other session is revoked at once.
func (m *Manager) CloseAll(wait time.Duration) {
	m.mu.Lock()
	if !m.stopping {
		m.stopping = true
		m.stopWait = wait
		close(m.stopped)
	}
	all := make([]*Session, 0, len(m.sessions))
	for _, s := range m.sessions {
		all = append(all, s)
	}
	m.mu.Unlock()
	var wg sync.WaitGroup
	waited, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	for _, s := range all {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if !s.Holding() {
				s.Close()
				return
			}
			select {
			case <-s.done:
			case <-waited.Done():
				m.lg.Warn("a holder did not close its session while the agent stopped; its lease is left to expire after its TTL",
					zap.String("lease", fmt.Sprintf("%x", s.Lease())), zap.String("name", s.Name), zap.Duration("ttl", s.TTL))
				s.Abandon()
			}
		}()
	}
	wg.Wait()
}

// Stopping is closed when the agent starts to stop.
func (m *Manager) Stopping() <-chan struct{} { return m.stopped }

func (m *Manager) forget(s *Session) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.sessions[s.ID]; ok {
		delete(m.sessions, s.ID)
		m.giveShare(s.owner)
		sessionsOpen.Dec()
	}
}

// newID returns 128 random bits in hex: a session id is a secret that
// proves ownership of what the session holds, so it must not be guessable.
func newID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b) // crypto/rand does not fail on Linux
	return hex.EncodeToString(b)
}
