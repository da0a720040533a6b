package faults

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Fault is one reversible fault. Inject starts it, Heal ends it; the
// harness records both in its fault log (Harness.Inject). Constructors:
// Isolate, Partition, Split, CutOneWay, Delay, Loss, KillAgent,
// PauseAgent, PauseProc, PauseHost, RestartAgent. A soak loop picks among
// functions returning Faults (see Soak).
type Fault interface {
	String() string
	Inject(ctx context.Context) error
	Heal(ctx context.Context) error
}

// FaultRecord is one entry of the fault log.
type FaultRecord struct {
	ID         int
	Fault      string
	Start, End time.Time // End is zero while the fault is on
	Err        error     // from Inject or Heal
}

func (r FaultRecord) String() string {
	end := "active"
	if !r.End.IsZero() {
		end = r.End.Format("15:04:05.000") + fmt.Sprintf(" (%s)", r.End.Sub(r.Start).Round(time.Millisecond))
	}
	s := fmt.Sprintf("#%d %s: %s → %s", r.ID, r.Fault, r.Start.Format("15:04:05.000"), end)
	if r.Err != nil {
		s += " error: " + r.Err.Error()
	}
	return s
}

// Active is an injected fault.
type Active struct {
	h    *Harness
	f    Fault
	id   int
	once sync.Once
	err  error
}

// Inject starts f and logs it. On error nothing stays injected (the
// harness heals what a failed Inject may have started).
func (h *Harness) Inject(ctx context.Context, f Fault) (*Active, error) {
	h.mu.Lock()
	id := len(h.faultLog) + 1
	h.faultLog = append(h.faultLog, FaultRecord{ID: id, Fault: f.String(), Start: time.Now()})
	h.mu.Unlock()
	h.events.Record("harness", "fault-start", fmt.Sprintf("#%d %s", id, f))
	err := f.Inject(ctx)
	h.mu.Lock()
	h.faultLog[id-1].Fault = f.String() // it may know more now (mechanism)
	h.mu.Unlock()
	if err != nil {
		herr := f.Heal(ctx)
		h.mu.Lock()
		h.faultLog[id-1].End, h.faultLog[id-1].Err = time.Now(), err
		h.mu.Unlock()
		h.events.Record("harness", "fault-failed", fmt.Sprintf("#%d %s: %v", id, f, err))
		return nil, errors.Join(fmt.Errorf("injecting %s: %w", f, err), herr)
	}
	a := &Active{h: h, f: f, id: id}
	h.mu.Lock()
	h.active = append(h.active, a)
	h.mu.Unlock()
	return a, nil
}

// Heal ends the fault (once; later calls return the first result).
func (a *Active) Heal(ctx context.Context) error {
	a.once.Do(func() {
		a.err = a.f.Heal(ctx)
		h := a.h
		h.mu.Lock()
		rec := &h.faultLog[a.id-1]
		rec.End = time.Now()
		if a.err != nil {
			rec.Err = a.err
		}
		for i, b := range h.active {
			if b == a {
				h.active = append(h.active[:i:i], h.active[i+1:]...)
				break
			}
		}
		h.mu.Unlock()
		h.events.Record("harness", "fault-end", fmt.Sprintf("#%d %s", a.id, a.f))
	})
	return a.err
}

// String names the fault.
func (a *Active) String() string { return a.f.String() }

// HealAll heals every active fault, newest first.
func (h *Harness) HealAll(ctx context.Context) error {
	h.mu.Lock()
	active := append([]*Active{}, h.active...)
	h.mu.Unlock()
	var errs []error
	for i := len(active) - 1; i >= 0; i-- {
		if err := active[i].Heal(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// FaultLog is every fault injected so far, in order.
func (h *Harness) FaultLog() []FaultRecord {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]FaultRecord{}, h.faultLog...)
}

// --- process faults ---

type procFault struct {
	desc   string
	inject func(ctx context.Context) error
	heal   func(ctx context.Context) error
}

func (f *procFault) String() string                   { return f.desc }
func (f *procFault) Inject(ctx context.Context) error { return f.inject(ctx) }
func (f *procFault) Heal(ctx context.Context) error {
	if f.heal == nil {
		return nil
	}
	return f.heal(ctx)
}

// agentStartBound bounds a restart in a Heal when ctx has no deadline.
const agentStartBound = 90 * time.Second

// KillAgent sends SIGKILL to the host's agent (kill -9). Heal restarts it
// on the same data dir and waits until it serves (/health), not for a
// quorum. A test that kills for good just never heals.
func KillAgent(x *Host) Fault {
	return &procFault{desc: "kill -9 agent " + x.Name,
		inject: func(ctx context.Context) error {
			a := x.Agent()
			if a == nil || a.Exited() {
				return fmt.Errorf("%s: no agent running", x.Name)
			}
			x.setUp(false)
			return ignoreSignaled(a.Kill())
		},
		heal: func(ctx context.Context) error { return x.restartAndWait(ctx) },
	}
}

// RestartAgent stops the host's agent with SIGTERM (SIGKILL after 20 s),
// starts it again on the same data dir, and waits until it serves. It is
// over once injected; Heal does nothing.
func RestartAgent(x *Host) Fault {
	return &procFault{desc: "restart agent " + x.Name,
		inject: func(ctx context.Context) error {
			a := x.Agent()
			if a == nil {
				return fmt.Errorf("%s: no agent", x.Name)
			}
			x.setUp(false)
			if err := a.Stop(20 * time.Second); err != nil && !a.Exited() {
				return err
			}
			return x.restartAndWait(ctx)
		},
	}
}

func (x *Host) restartAndWait(ctx context.Context) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, agentStartBound)
		defer cancel()
	}
	if a := x.Agent(); a != nil && !a.Exited() {
		return nil // already back (healed twice, or restarted by the test)
	}
	if err := x.RestartAgent(ctx); err != nil {
		return err
	}
	return x.WaitUp(ctx)
}

func ignoreSignaled(err error) error {
	var ee interface{ ExitCode() int }
	if errors.As(err, &ee) && ee.ExitCode() == -1 {
		return nil // killed by the signal, as meant
	}
	return err
}

// PauseAgent sends SIGSTOP to the host's agent; Heal sends SIGCONT.
func PauseAgent(x *Host) Fault {
	var wasUp bool
	var p *Proc
	return &procFault{desc: "pause agent " + x.Name,
		inject: func(ctx context.Context) error {
			p = x.Agent()
			if p == nil || p.Exited() {
				return fmt.Errorf("%s: no agent running", x.Name)
			}
			wasUp, _ = x.UpState()
			x.setUp(false)
			if err := p.Signal(syscall.SIGSTOP); err != nil {
				return err
			}
			return waitStopped(ctx, p.Pid(), true)
		},
		heal: func(ctx context.Context) error {
			if p == nil {
				return nil
			}
			err := p.Signal(syscall.SIGCONT)
			if errors.Is(err, os.ErrProcessDone) {
				return nil
			}
			if x.Agent() == p {
				x.setUp(wasUp)
			}
			return err
		},
	}
}

// PauseProc sends SIGSTOP to one process the harness started (a CLI, a
// CMD holder, an agent); Heal sends SIGCONT.
func PauseProc(p *Proc) Fault {
	if p.Host.Agent() == p {
		return PauseAgent(p.Host)
	}
	return &procFault{desc: "pause " + p.Label + " on " + p.Host.Name,
		inject: func(ctx context.Context) error {
			if err := p.Signal(syscall.SIGSTOP); err != nil {
				return err
			}
			return waitStopped(ctx, p.Pid(), true)
		},
		heal: func(ctx context.Context) error {
			if err := p.Signal(syscall.SIGCONT); err != nil && !errors.Is(err, os.ErrProcessDone) {
				return err
			}
			return nil
		},
	}
}

// PauseHost sends SIGSTOP to every process in the host's namespace (the
// agent, CLIs, their children), as if the machine froze; Heal sends
// SIGCONT to the same processes. Each is held by a pidfd, so a pid reused
// in between is never signalled.
func PauseHost(x *Host) Fault {
	var fds []int
	var wasUp bool
	return &procFault{desc: "pause host " + x.Name,
		inject: func(ctx context.Context) error {
			pids, err := netnsPids(ctx, x.NS)
			if err != nil {
				return err
			}
			wasUp, _ = x.UpState()
			x.setUp(false)
			for _, pid := range pids {
				fd, err := unix.PidfdOpen(pid, 0)
				if err != nil {
					continue // gone already
				}
				if !pidInNetns(pid, x.NS) {
					unix.Close(fd)
					continue
				}
				if err := unix.PidfdSendSignal(fd, unix.SIGSTOP, nil, 0); err != nil {
					unix.Close(fd)
					continue
				}
				fds = append(fds, fd)
				_ = waitStopped(ctx, pid, true)
			}
			if len(fds) == 0 {
				return fmt.Errorf("%s: no process to pause", x.Name)
			}
			return nil
		},
		heal: func(ctx context.Context) error {
			for _, fd := range fds {
				_ = unix.PidfdSendSignal(fd, unix.SIGCONT, nil, 0)
				unix.Close(fd)
			}
			fds = nil
			if a := x.Agent(); a != nil && !a.Exited() {
				x.setUp(wasUp)
			}
			return nil
		},
	}
}

// ProcState is the state letter of /proc/PID/stat ('S', 'R', 'T', 'Z'…),
// 0 if the process is gone.
func ProcState(pid int) byte {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+2 >= len(s) {
		return 0
	}
	return s[i+2]
}

// waitStopped polls until pid is (or is no longer) in the stopped state.
func waitStopped(ctx context.Context, pid int, stopped bool) error {
	deadline := time.Now().Add(5 * time.Second)
	for {
		st := ProcState(pid)
		if st == 0 || (st == 'T') == stopped {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("pid %d: state %c, want stopped=%v", pid, st, stopped)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
