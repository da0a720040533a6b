package healthcheck

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// Monitor runs one Definition's check on its own goroutine and holds the
// instance's current Result. Create it with Start; end it with Stop.
type Monitor struct {
	def        Definition
	invalid    error // why def did not normalize; the monitor then only reports it
	notify     func(Result)
	deregister func()

	ctx    context.Context // cancelled by Stop; bounds every probe
	cancel context.CancelFunc
	wake   chan struct{} // capacity 1: a Heartbeat changed the state
	done   chan struct{} // closed when the goroutine has returned
	once   sync.Once

	mu            sync.Mutex
	result        Result
	stopped       bool
	criticalSince time.Time // when the status last became critical; zero if it is not
	ttlDeadline   time.Time // when a TTL check expires; zero once it has

	// Used only by the goroutine.
	delivered    Result // the last Result notify saw, or the initial one
	deregistered bool   // deregister has been called; it never is again
}

// Start runs def's check on a new goroutine and returns at once.
//
// initial is the status until the check says otherwise: critical for a new
// instance, or the last known status after an agent restart, so a restart
// does not flap every instance. If it is critical, the deregister clock
// starts now.
//
// The first check runs immediately, not one interval later. notify, if not
// nil, is called with the new Result each time the status or output
// changes; calls come one at a time from the monitor's goroutine, with no
// lock held, and never after Stop has returned. If the status changes again
// while notify is busy, the next call carries only the latest Result:
// notify always sees the present, never a backlog. notify must not call
// Stop (Stop waits for notify to return); it may call Heartbeat and Result.
//
// deregister, if not nil, is called once, on its own goroutine, when the
// status has been critical for def.DeregisterCriticalAfter without a break.
// Its own goroutine lets it do the natural thing, remove the instance and
// Stop this monitor. It can race with a Stop made for another reason, so
// it should check that the instance it removes is still the one monitored.
//
// def should have been through Normalize; Start normalizes a copy anyway,
// and if that fails the monitor reports critical with the error as output
// and runs no check.
func Start(def Definition, initial Result, notify func(Result), deregister func()) *Monitor {
	ctx, cancel := context.WithCancel(context.Background())
	m := &Monitor{
		notify:     notify,
		deregister: deregister,
		ctx:        ctx,
		cancel:     cancel,
		wake:       make(chan struct{}, 1),
		done:       make(chan struct{}),
		result:     sanitize(initial),
	}
	if m.notify == nil {
		m.notify = func(Result) {}
	}
	if m.deregister == nil {
		m.deregister = func() {}
	}
	m.delivered = m.result
	if m.invalid = def.Normalize(); m.invalid == nil {
		m.def = def // else the zero Definition: nothing probed, nothing deregistered
	}
	now := time.Now()
	if m.result.Status == StatusCritical {
		m.criticalSince = now
	}
	if m.invalid == nil && def.Kind() == KindTTL {
		m.ttlDeadline = now.Add(def.TTL)
	}
	running.Add(1)
	go m.run()
	return m
}

// running counts the monitors whose goroutine has not returned.
var running atomic.Int64

// Running is how many monitors run in this process: a check left running
// for an instance nobody has any more is a leak, and this shows it.
func Running() int { return int(running.Load()) }

// Heartbeat reports a TTL check's status: "pass", "warn" or "fail" (or
// "passing", "warning", "critical"). It takes effect at once, bypassing the
// thresholds, and holds until def.TTL passes without another heartbeat;
// then the check is critical with output "TTL expired".
func (m *Monitor) Heartbeat(status, output string) error {
	if m.invalid != nil {
		return m.invalid
	}
	if m.def.Kind() != KindTTL {
		return ErrNotTTL
	}
	s, ok := parseStatus(status)
	if !ok {
		return fmt.Errorf("%w, got %q", ErrBadStatus, status)
	}
	now := time.Now()
	m.mu.Lock()
	if m.stopped {
		m.mu.Unlock()
		return ErrStopped
	}
	m.ttlDeadline = now.Add(m.def.TTL)
	m.setLocked(Result{Status: s, Output: truncate(output)}, now)
	m.mu.Unlock()

	// Even an unchanged Result moved the TTL deadline, so always wake the
	// goroutine to re-arm its timer.
	select {
	case m.wake <- struct{}{}:
	default: // a wake-up is already pending; it will see this change too
	}
	return nil
}

// Result returns the current status and output. It may be newer than the
// last Result passed to notify, which is still on its way.
func (m *Monitor) Result() Result {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.result
}

// Stop ends the check and waits for the goroutine to return: a probe in
// flight is abandoned (its outcome says nothing about the instance), and
// no notify is made once Stop has returned. Stop may be called more than
// once, from any goroutine but notify's.
func (m *Monitor) Stop() {
	m.once.Do(func() {
		m.mu.Lock()
		m.stopped = true
		m.mu.Unlock()
		m.cancel()
	})
	<-m.done
}

// setLocked makes r the current Result and keeps the critical clock:
// it starts when the status becomes critical and stops when it leaves.
// Critical to critical with new output is not a break.
func (m *Monitor) setLocked(r Result, now time.Time) {
	if r.Status == StatusCritical && m.result.Status != StatusCritical {
		m.criticalSince = now
	} else if r.Status != StatusCritical {
		m.criticalSince = time.Time{}
	}
	m.result = r
}

func (m *Monitor) set(r Result) {
	m.mu.Lock()
	m.setLocked(r, time.Now())
	m.mu.Unlock()
}
