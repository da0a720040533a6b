// Package supervise runs the CMD of `beacon lock … -- CMD` and
// `beacon elect … -- CMD`: a program that may run only while its beacon
// process holds something (a lock, a leadership), and must die with it.
package supervise

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/beaconhq/beacon/internal/holdclock"
)

// Command is a program run while a lock or leadership is held. It runs in a process group of its own, so that signals and the
// final stop reach everything it started, and it must not outlive the
// process that holds the lock for it, even one killed with SIGKILL:
//
//   - on Linux the child gets PR_SET_PDEATHSIG = SIGKILL, so the kernel
//     kills it the moment its parent dies;
//   - a guard process (GuardArgs, e.g. `beacon cmd-guard`) holds the read
//     end of a pipe whose only writer is the parent; when the parent dies
//     the pipe reaches EOF and the guard kills the whole group, children
//     of CMD included (PDEATHSIG reaches only CMD itself);
//   - the parent tells the guard the time at which CMD must be dead
//     (SetKillDeadline), and the guard kills the group then if the parent
//     has not moved it: a parent that is paused (SIGSTOP), not dead, cannot
//     act on its own deadline, while its hold ends in the cluster all the
//     same.
//
// A command that moves itself to another process group or session
// (a daemon) escapes both; so do processes that outlive the guard.
type Command struct {
	cmd    *exec.Cmd
	pgid   int
	guard  *exec.Cmd
	guardW *os.File
	fg     bool // CMD's group was made the terminal's foreground group

	done chan struct{}
	err  error
}

// CommandOptions configure StartCommand.
type CommandOptions struct {
	Args      []string  // the program and its arguments
	Env       []string  // the full environment
	GuardArgs []string  // how to run the guard (reads the group id, then waits for EOF)
	Stdin     io.Reader // the program's stdin; default this process's
}

// StartCommand starts the program with this process's stdin, stdout and
// stderr, and its guard.
func StartCommand(o CommandOptions) (*Command, error) {
	if len(o.Args) == 0 {
		return nil, errors.New("no command to run")
	}
	c := &Command{done: make(chan struct{})}
	if len(o.GuardArgs) > 0 {
		r, w, err := os.Pipe()
		if err != nil {
			return nil, err
		}
		c.guard = exec.Command(o.GuardArgs[0], o.GuardArgs[1:]...)
		c.guard.Stdin, c.guard.Stderr = r, os.Stderr
		// A session of its own: a kill (or SIGSTOP) of beacon's process
		// group, as `timeout -s KILL` or a shell's job control sends, must
		// not take the guard along, or CMD's children outlive beacon.
		c.guard.SysProcAttr = guardProcAttr()
		err = c.guard.Start()
		r.Close()
		if err != nil {
			w.Close()
			return nil, fmt.Errorf("starting the guard: %w", err)
		}
		c.guardW = w
	}
	c.cmd = exec.Command(o.Args[0], o.Args[1:]...)
	c.cmd.Env = o.Env
	c.cmd.Stdin, c.cmd.Stdout, c.cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	if o.Stdin != nil {
		c.cmd.Stdin = o.Stdin
	}
	c.cmd.SysProcAttr, c.fg = sysProcAttr()

	// PDEATHSIG fires when the thread that forked the child ends, not the
	// process: start and wait on one locked thread that lives as long as
	// the child does.
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := c.cmd.Start(); err != nil {
			started <- err
			runtime.UnlockOSThread()
			return
		}
		started <- nil
		c.err = c.cmd.Wait()
		close(c.done)
	}()
	if err := <-started; err != nil {
		c.closeGuard()
		return nil, err
	}
	c.pgid = c.cmd.Process.Pid
	if c.guardW != nil {
		if _, err := fmt.Fprintf(c.guardW, "%d\n", c.pgid); err != nil {
			c.Kill()
			<-c.done
			c.closeGuard()
			return nil, fmt.Errorf("telling the guard: %w", err)
		}
	}
	return c, nil
}

// SetKillDeadline tells the guard to kill the group when the hold clock
// (holdclock, the same in every process of the machine) reaches d, unless
// a later call moves it. It never blocks: a guard that does not read (it
// is paused with us) misses the update, and the parent itself still kills
// at its deadline.
func (c *Command) SetKillDeadline(d time.Duration) {
	if c.guardW == nil || !holdclock.SystemWide() {
		return
	}
	_ = c.guardW.SetWriteDeadline(time.Now().Add(10 * time.Millisecond))
	_, _ = fmt.Fprintf(c.guardW, "deadline %d\n", int64(d))
}

// Pid is the program's process id (and its group's id).
func (c *Command) Pid() int { return c.pgid }

// Done is closed when the program has exited.
func (c *Command) Done() <-chan struct{} { return c.done }

// Signal sends sig to the program's process group.
func (c *Command) Signal(sig syscall.Signal) { _ = syscall.Kill(-c.pgid, sig) }

// Kill sends SIGKILL to the program's process group.
func (c *Command) Kill() { c.Signal(syscall.SIGKILL) }

// Stop sends SIGTERM to the group, then SIGKILL after grace if the
// program is still running. It returns once the program has exited.
func (c *Command) Stop(grace time.Duration) { c.stopWith(syscall.SIGTERM, grace) }

// stopWith is Stop with another first signal (one beacon itself received,
// passed on).
func (c *Command) stopWith(sig syscall.Signal, grace time.Duration) {
	c.Signal(sig)
	select {
	case <-c.done:
	case <-time.After(grace):
		c.Kill()
		<-c.done
	}
}

// Finish, after the program exited, kills whatever it left running in its
// group (nothing may run unlocked once the lock is given up), ends the
// guard, and gives the terminal back. It returns the exit code: the
// program's, or 128 + the signal that killed it.
func (c *Command) Finish() int {
	<-c.done
	c.Kill()
	c.waitGroupGone(2 * time.Second)
	c.closeGuard()
	if c.fg {
		restoreForeground()
	}
	var ee *exec.ExitError
	switch {
	case c.err == nil:
		return 0
	case errors.As(c.err, &ee):
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int(ws.Signal())
		}
		return ee.ExitCode()
	}
	return 1
}

// waitGroupGone waits, up to d, until no process of CMD's group is left:
// SIGKILL is sent, not yet done, when kill(2) returns, and what CMD held
// is released only after. A process in uninterruptible sleep can take
// longer; d bounds the wait.
func (c *Command) waitGroupGone(d time.Duration) {
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(2 * time.Millisecond) {
		if !groupLives(c.pgid) {
			return
		}
	}
}

func (c *Command) closeGuard() {
	if c.guardW == nil {
		return
	}
	c.guardW.Close()
	_ = c.guard.Wait()
	c.guardW = nil
}

// Guard is the guard process's work: it reads a process group id from r,
// then deadlines ("deadline NS", on the hold clock), and kills the group
// when r ends (its parent closed the pipe, or died) or the latest deadline
// passes. It ignores the terminal's signals, which are its parent's to
// handle.
func Guard(r io.Reader) error {
	signal.Ignore(syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT, syscall.SIGTSTP)
	br := bufio.NewReader(r)
	line, err := br.ReadString('\n')
	if err != nil {
		return nil // the parent died before starting the program; PDEATHSIG covers a child
	}
	pgid, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil || pgid <= 1 {
		return fmt.Errorf("guard: %q is not a process group id", line)
	}
	deadlines := make(chan time.Duration, 1)
	ended := make(chan struct{})
	go func() {
		defer close(ended)
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				return
			}
			if v, ok := strings.CutPrefix(strings.TrimSpace(line), "deadline "); ok {
				if ns, err := strconv.ParseInt(v, 10, 64); err == nil {
					select {
					case <-deadlines: // only the latest counts
					default:
					}
					deadlines <- time.Duration(ns)
				}
			}
		}
	}()
	var deadline time.Duration // 0: none yet
	for waiting := true; waiting; {
		wait := time.Hour
		if deadline != 0 {
			wait = min(deadline-holdclock.Now(), 50*time.Millisecond) // the hold clock counts suspends; timers do not
		}
		t := time.NewTimer(max(wait, 0))
		select {
		case <-ended:
			waiting = false
		case d := <-deadlines:
			deadline = d
		case <-t.C:
			if deadline != 0 && holdclock.Now() >= deadline {
				waiting = false
			}
		}
		t.Stop()
	}
	if err := syscall.Kill(-pgid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("guard: killing process group %d: %w", pgid, err)
	}
	return nil
}
