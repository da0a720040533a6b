package faults

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"
)

// RegistryWorkload registers instances of one service with the CLI on
// hosts, asks every agent's DNS for the service (SRV over TCP, from inside
// each host), and checks what they answer:
//
//   - no agent ever answers an instance nobody tried to register;
//   - an agent that runs, unpaused, answers every query (from its last
//     catalog if it cannot reach the cluster);
//   - an optional invariant the test sets for a phase (SetInvariant);
//   - WaitConverged: every agent answers the same set, holding every
//     instance registered OK on a live host and nothing deregistered OK
//     or owned by a dead host (indeterminate ones may be in or out).
type RegistryWorkload struct {
	h       *Harness
	r       *Report
	Service string

	mu        sync.Mutex
	seq       int
	inst      map[string]*instance
	dead      map[*Host]bool
	invariant func(x *Host, got map[string]bool) error
	last      map[*Host]map[string]bool
}

type instState int

const (
	stRequired instState = iota // registered OK, not deregistered
	stMaybe                     // indeterminate register or deregister
	stGone                      // deregistered OK, or its register failed
)

type instance struct {
	host  *Host
	state instState
}

// NewRegistryWorkload registers instances of service and reports to r.
func NewRegistryWorkload(h *Harness, r *Report, service string) *RegistryWorkload {
	return &RegistryWorkload{h: h, r: r, Service: service, inst: map[string]*instance{},
		dead: map[*Host]bool{}, last: map[*Host]map[string]bool{}}
}

// Register registers a new instance (a fresh id) on x's agent with
// `beacon register` run inside x. err is the CLI's error line, if any.
func (w *RegistryWorkload) Register(ctx context.Context, x *Host) (id string, o Outcome, err error) {
	w.mu.Lock()
	w.seq++
	seq := w.seq
	id = fmt.Sprintf("%s-%s-%d", x.Name, w.Service, seq)
	w.inst[id] = &instance{host: x, state: stMaybe} // known from the moment it is tried
	w.mu.Unlock()

	res := x.Run(ctx, "register", "--name", w.Service, "--port", fmt.Sprint(20000+seq), "--id", id, "--call-timeout", "5s")
	o = res.Outcome()
	if o != OK {
		err = fmt.Errorf("%s", res.Line())
	}
	w.r.Record("register", o)
	w.h.events.Record("registry", "register-"+o.String(), id+" "+res.Line())
	w.mu.Lock()
	switch o {
	case OK:
		w.inst[id].state = stRequired
	case Failed:
		// Judged as never applied from here on: keep what the CLI said.
		w.inst[id].state = stGone
		w.r.Note("register %s on %s failed (exit %d): %s", id, x.Name, res.Code, res.Line())
	}
	w.mu.Unlock()
	return id, o, err
}

// Deregister removes an instance through its own host's agent.
func (w *RegistryWorkload) Deregister(ctx context.Context, id string) (Outcome, error) {
	w.mu.Lock()
	in := w.inst[id]
	w.mu.Unlock()
	if in == nil {
		return Failed, fmt.Errorf("unknown instance %s", id)
	}
	res := in.host.Run(ctx, "deregister", id, "--service", w.Service, "--call-timeout", "5s")
	o := res.Outcome()
	var err error
	if o != OK {
		err = fmt.Errorf("%s", res.Line())
	}
	w.r.Record("deregister", o)
	w.h.events.Record("registry", "deregister-"+o.String(), id+" "+res.Line())
	w.mu.Lock()
	switch o {
	case OK:
		in.state = stGone
	case Indeterminate:
		in.state = stMaybe
	case Failed:
		// Judged as never applied: keep what the CLI said.
		w.r.Note("deregister %s on %s failed (exit %d): %s", id, in.host.Name, res.Code, res.Line())
	}
	w.mu.Unlock()
	return o, err
}

// Registered lists the ids registered OK and not deregistered, by host.
func (w *RegistryWorkload) Registered(x *Host) []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var ids []string
	for id, in := range w.inst {
		if in.host == x && in.state == stRequired {
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	return ids
}

// MarkDead says x's agent is gone for good: its instances must leave
// every answer. MarkAlive undoes it (the agent restarted on its data).
func (w *RegistryWorkload) MarkDead(x *Host) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.dead[x] = true
}

// MarkAlive: x's agent runs again, with the registrations it kept.
func (w *RegistryWorkload) MarkAlive(x *Host) {
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.dead, x)
}

// SetInvariant installs a check every DNS answer must pass from now on;
// nil removes it.
func (w *RegistryWorkload) SetInvariant(f func(x *Host, got map[string]bool) error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.invariant = f
}

// Last is x's last answer.
func (w *RegistryWorkload) Last(x *Host) map[string]bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return maps.Clone(w.last[x])
}

// expected: what must be in every converged answer, and what may be.
func (w *RegistryWorkload) expected() (must, may map[string]bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	must, may = map[string]bool{}, map[string]bool{}
	for id, in := range w.inst {
		if w.dead[in.host] {
			continue
		}
		switch in.state {
		case stRequired:
			must[id] = true
			may[id] = true
		case stMaybe:
			may[id] = true
		}
	}
	return must, may
}

// Query asks x's agent and checks the answer; it records a "dns" op.
func (w *RegistryWorkload) Query(ctx context.Context, x *Host) (map[string]bool, error) {
	up0, gen0 := x.UpState()
	start := time.Now()
	got, err := x.ServiceInstances(ctx, w.Service)
	up1, gen1 := x.UpState()
	if err != nil {
		w.r.Record("dns", Failed)
		if up0 && up1 && gen0 == gen1 && ctx.Err() == nil {
			w.r.Anomaly("%s's agent runs and is not paused, but did not answer DNS (%s): %v", x.Name, time.Since(start).Round(time.Millisecond), err)
		}
		return nil, err
	}
	w.r.Record("dns", OK)
	w.mu.Lock()
	var unknown []string
	for id := range got {
		if w.inst[id] == nil {
			unknown = append(unknown, id)
		}
	}
	inv := w.invariant
	w.last[x] = got
	w.mu.Unlock()
	if len(unknown) > 0 {
		w.r.Anomaly("%s answered instances never registered: %v", x.Name, unknown)
	}
	if inv != nil {
		if err := inv(x, got); err != nil {
			w.r.Anomaly("%s: %v", x.Name, err)
		}
	}
	return got, nil
}

// Probe queries each host's agent every interval in the background until
// the returned stop is called (or ctx ends); stop waits for the probers.
// Hosts marked dead are skipped.
func (w *RegistryWorkload) Probe(ctx context.Context, hosts []*Host, every time.Duration) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for _, x := range hosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				w.mu.Lock()
				dead := w.dead[x]
				w.mu.Unlock()
				if !dead {
					_, _ = w.Query(ctx, x)
				}
				select {
				case <-ctx.Done():
				case <-time.After(every):
				}
			}
		}()
	}
	return func() { cancel(); wg.Wait() }
}

// WaitConverged polls every given host (skipping dead ones) until all
// answer the same set, holding every required instance and nothing that
// must be gone. It returns the time since `since`; after bound (counted
// from now) it returns an error naming what differs.
func (w *RegistryWorkload) WaitConverged(ctx context.Context, since time.Time, hosts []*Host, bound time.Duration) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, bound)
	defer cancel()
	var why, last string
	lastAt := time.Now()
	for wait := 20 * time.Millisecond; ; wait = min(wait*2, 200*time.Millisecond) {
		why = w.converged(ctx, hosts)
		if why == "" {
			d := time.Since(since)
			if d > 3*time.Second && last != "" {
				w.r.Note("converged %s after %s; %s before, still: %s", d.Round(time.Millisecond), since.Format("15:04:05.000"),
					time.Since(lastAt).Round(time.Millisecond), last)
			}
			return d, nil
		}
		last, lastAt = why, time.Now()
		select {
		case <-ctx.Done():
			return time.Since(since), fmt.Errorf("not converged within %s: %s", bound, why)
		case <-time.After(wait):
		}
	}
}

// converged says what keeps the hosts' answers from agreeing with the
// expected instances and with each other: every host that differs, so that
// a report tells which side is wrong ("" when they all agree).
func (w *RegistryWorkload) converged(ctx context.Context, hosts []*Host) string {
	must, may := w.expected()
	var first map[string]bool
	var firstHost *Host
	var diffs []string
	for _, x := range hosts {
		w.mu.Lock()
		dead := w.dead[x]
		w.mu.Unlock()
		if dead {
			continue
		}
		got, err := w.Query(ctx, x)
		if err != nil {
			diffs = append(diffs, fmt.Sprintf("%s: %v", x.Name, err))
			continue
		}
		var missing, extra []string
		for id := range must {
			if !got[id] {
				missing = append(missing, id)
			}
		}
		for id := range got {
			if !may[id] {
				extra = append(extra, id)
			}
		}
		if len(missing)+len(extra) > 0 {
			slices.Sort(missing)
			slices.Sort(extra)
			diffs = append(diffs, fmt.Sprintf("%s lacks %v and has %v", x.Name, missing, extra))
			continue
		}
		if first == nil {
			first, firstHost = got, x
		} else if !maps.Equal(first, got) {
			diffs = append(diffs, fmt.Sprintf("%s answers %s but %s answers %s", firstHost.Name, setString(first), x.Name, setString(got)))
		}
	}
	return strings.Join(diffs, "; ")
}

func setString(s map[string]bool) string {
	keys := slices.Sorted(maps.Keys(s))
	return "{" + strings.Join(keys, " ") + "}"
}
