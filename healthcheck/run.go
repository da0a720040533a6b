package healthcheck

import (
	"context"
	"time"
)

// run is the monitor's goroutine. Every change to the state happens either
// here or in Heartbeat; after each event the loop delivers any new Result
// and re-arms its timers from the state, so there is one place that decides
// what to wait for next.
func (m *Monitor) run() {
	defer close(m.done)
	defer running.Add(-1)

	var tick <-chan time.Time
	var probe prober
	var th *thresholds
	switch {
	case m.invalid != nil:
		m.set(Result{Status: StatusCritical, Output: truncate("invalid health check: " + m.invalid.Error())})
	case m.def.Kind() == "":
		m.set(Result{Status: StatusPassing})
	case m.def.Kind() != KindTTL:
		probe = newProber(m.def)
		th = newThresholds(m.def.SuccessBeforePassing, m.def.FailuresBeforeCritical)
		ticker := time.NewTicker(m.def.Interval)
		defer ticker.Stop()
		tick = ticker.C
		m.check(probe, th)
	}

	ttlTimer := newStoppedTimer()
	deregTimer := newStoppedTimer()
	defer ttlTimer.Stop()
	defer deregTimer.Stop()

	for {
		m.deliver()
		m.arm(ttlTimer, deregTimer)
		select {
		case <-m.ctx.Done():
			return
		case <-tick:
			m.check(probe, th)
		case <-m.wake:
		case <-ttlTimer.C:
			m.expire()
		case <-deregTimer.C:
			m.maybeDeregister()
		}
	}
}

// check runs one probe under the timeout and applies the thresholds.
func (m *Monitor) check(probe prober, th *thresholds) {
	ctx, cancel := context.WithTimeout(m.ctx, m.def.Timeout)
	raw := sanitize(probe(ctx))
	cancel()
	if m.ctx.Err() != nil {
		return // stopped mid-probe: the failure is ours, not the instance's
	}
	// Only this goroutine writes a probed check's Result, so reading the
	// status without the lock held across the probe is safe.
	if th.next(m.Result().Status, raw.Status) == raw.Status {
		m.set(raw)
	}
}

// deliver calls notify if the Result differs from the last one delivered.
func (m *Monitor) deliver() {
	r := m.Result()
	if r == m.delivered || m.ctx.Err() != nil {
		return
	}
	m.delivered = r
	m.notify(r)
}

// arm points the timers at the next TTL expiry and deregistration, or
// stops them if there is none.
func (m *Monitor) arm(ttlTimer, deregTimer *time.Timer) {
	m.mu.Lock()
	ttlAt := m.ttlDeadline
	var deregAt time.Time
	if d := m.def.DeregisterCriticalAfter; d > 0 && !m.criticalSince.IsZero() && !m.deregistered {
		deregAt = m.criticalSince.Add(d)
	}
	m.mu.Unlock()
	reset(ttlTimer, ttlAt)
	reset(deregTimer, deregAt)
}

// expire turns a TTL check critical if no heartbeat came in time. The timer
// may fire just after a heartbeat moved the deadline; the deadline, not the
// timer, decides.
func (m *Monitor) expire() {
	now := time.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.ttlDeadline.IsZero() || now.Before(m.ttlDeadline) {
		return
	}
	m.ttlDeadline = time.Time{}
	m.setLocked(Result{Status: StatusCritical, Output: "TTL expired"}, now)
}

func (m *Monitor) maybeDeregister() {
	now := time.Now()
	m.mu.Lock()
	since := m.criticalSince
	m.mu.Unlock()
	if m.deregistered || since.IsZero() || now.Before(since.Add(m.def.DeregisterCriticalAfter)) || m.ctx.Err() != nil {
		return
	}
	m.deregistered = true
	go m.deregister()
}

func newStoppedTimer() *time.Timer {
	t := time.NewTimer(time.Hour)
	t.Stop()
	return t
}

// reset arms t to fire at at, or stops it if at is zero. Since Go 1.23 a
// Reset or Stop timer never delivers a stale tick, so no draining is needed.
func reset(t *time.Timer, at time.Time) {
	if at.IsZero() {
		t.Stop()
		return
	}
	t.Reset(time.Until(at))
}
