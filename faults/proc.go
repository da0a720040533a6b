package faults

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Proc is one process the harness started inside a host's namespace:
// an agent, a long-running CLI (`beacon lock … -- CMD`), or any command.
// Its stdout and stderr go to files in the host's directory.
type Proc struct {
	Host  *Host
	Label string   // e.g. "agent.2" or "lock.5"
	Argv  []string // what runs inside the namespace

	cmd        *exec.Cmd
	stdoutPath string
	stderrPath string
	started    time.Time

	done  chan struct{}
	mu    sync.Mutex
	ended time.Time
	err   error
}

// Cmd describes a process to start in a host: Argv[0] "beacon" means the
// beacon binary built for this run.
type Cmd struct {
	Argv  []string
	Env   []string  // extra KEY=VALUE
	Stdin io.Reader // nil: /dev/null
	Label string    // names its log files; default Argv[1] or Argv[0]
}

// Pid is the process id (the same process as `ip netns exec`, which execs).
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// Started is when the process was started.
func (p *Proc) Started() time.Time { return p.started }

// Signal sends sig to the process, unless it has already been reaped
// (os.Process signals through a pidfd, so a reused pid is never hit).
func (p *Proc) Signal(sig syscall.Signal) error {
	if p.Exited() {
		return os.ErrProcessDone
	}
	return p.cmd.Process.Signal(sig)
}

// Done is closed when the process has exited and been reaped.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Exited reports whether the process has ended.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Wait waits for the process to end and returns its exit error (nil for
// exit 0), or ctx's error if ctx ends first.
func (p *Proc) Wait(ctx context.Context) error {
	select {
	case <-p.done:
		p.mu.Lock()
		defer p.mu.Unlock()
		return p.err
	case <-ctx.Done():
		return fmt.Errorf("%s (pid %d) still running: %w", p.Label, p.Pid(), ctx.Err())
	}
}

// ExitCode is the exit status, -1 while running or when killed by a signal.
func (p *Proc) ExitCode() int {
	if !p.Exited() {
		return -1
	}
	return p.cmd.ProcessState.ExitCode()
}

// Stop sends SIGTERM (and SIGCONT, in case it is paused), waits up to
// grace, then SIGKILLs; it returns the exit error.
func (p *Proc) Stop(grace time.Duration) error {
	_ = p.Signal(syscall.SIGTERM)
	_ = p.Signal(syscall.SIGCONT)
	ctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	if err := p.Wait(ctx); err == nil || p.Exited() {
		return err
	}
	return p.Kill()
}

// Kill sends SIGKILL and waits (bounded) until the process is reaped.
func (p *Proc) Kill() error {
	_ = p.Signal(syscall.SIGKILL)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return p.Wait(ctx)
}

// Stdout is what the process has written to stdout so far.
func (p *Proc) Stdout() string { return readFile(p.stdoutPath) }

// Stderr is what the process has written to stderr so far.
func (p *Proc) Stderr() string { return readFile(p.stderrPath) }

// LogPaths are the files holding stdout and stderr.
func (p *Proc) LogPaths() (stdout, stderr string) { return p.stdoutPath, p.stderrPath }

func readFile(path string) string {
	b, _ := os.ReadFile(path)
	return string(b)
}

// spawn starts c inside the host's namespace through `ip netns exec`.
func (x *Host) spawn(ctx context.Context, c Cmd) (*Proc, error) {
	if len(c.Argv) == 0 {
		return nil, errors.New("spawn: empty argv")
	}
	argv := append([]string{}, c.Argv...)
	if argv[0] == "beacon" {
		argv[0] = x.h.bin
	}
	label := c.Label
	if label == "" {
		label = filepath.Base(c.Argv[0])
		if len(c.Argv) > 1 && !strings.HasPrefix(c.Argv[1], "-") {
			label = c.Argv[1]
		}
	}
	x.h.mu.Lock()
	x.h.procSeq++
	label = fmt.Sprintf("%s.%d", label, x.h.procSeq)
	x.h.mu.Unlock()

	p := &Proc{Host: x, Label: label, Argv: argv, done: make(chan struct{}),
		stdoutPath: filepath.Join(x.Dir, label+".out"), stderrPath: filepath.Join(x.Dir, label+".err")}
	stdout, err := os.Create(p.stdoutPath)
	if err != nil {
		return nil, err
	}
	defer stdout.Close()
	stderr, err := os.Create(p.stderrPath)
	if err != nil {
		return nil, err
	}
	defer stderr.Close()

	cmd := exec.Command("ip", append([]string{"netns", "exec", x.NS}, argv...)...)
	cmd.Dir = x.Dir
	cmd.Env = append(x.env(), c.Env...)
	cmd.Stdin = c.Stdin
	cmd.Stdout, cmd.Stderr = stdout, stderr
	p.cmd = cmd

	x.h.mu.Lock()
	if x.h.closed {
		x.h.mu.Unlock()
		return nil, errors.New("harness closed")
	}
	x.h.procs = append(x.h.procs, p)
	x.h.mu.Unlock()

	if err := startOnSpawner(cmd); err != nil {
		close(p.done)
		return nil, fmt.Errorf("starting %s in %s: %v", label, x.Name, err)
	}
	p.started = time.Now()
	go func() {
		err := cmd.Wait()
		p.mu.Lock()
		p.err, p.ended = err, time.Now()
		p.mu.Unlock()
		close(p.done)
	}()
	if ctx != nil && ctx.Done() != nil {
		go func() {
			select {
			case <-ctx.Done():
				_ = p.Signal(syscall.SIGKILL)
			case <-p.done:
			}
		}()
	}
	return p, nil
}

// Result is the outcome of a one-shot command.
type Result struct {
	Argv           []string
	Stdout, Stderr string
	Code           int   // exit code; -1 when killed (timeout) or not started
	Err            error // nil for exit 0
	Start, End     time.Time
}

// OK is true for exit 0.
func (r Result) OK() bool { return r.Err == nil }

// Line is stderr's last non-empty line (beacon prints each error as one).
func (r Result) Line() string {
	lines := strings.Split(strings.TrimSpace(r.Stderr), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}

func (r Result) String() string {
	return fmt.Sprintf("%s: exit %d: %s%s", strings.Join(r.Argv, " "), r.Code, strings.TrimSpace(r.Stdout), strings.TrimSpace(r.Stderr))
}

// Outcome classifies a CLI call: exit 0 is OK; an error saying the
// answer never came (deadline, unavailable, canceled) is Indeterminate,
// since the request may have been applied; any other error is Failed.
func (r Result) Outcome() Outcome {
	if r.Err == nil {
		return OK
	}
	s := strings.ToLower(r.Stderr)
	for _, w := range []string{"deadline exceeded", "unavailable", "canceled", "context deadline", "timed out", "timeout"} {
		if strings.Contains(s, w) {
			return Indeterminate
		}
	}
	if r.Code <= 0 {
		// Killed (-1), or exit 0 with an error from Wait (its output lost
		// on the way): the CLI's answer is not known.
		return Indeterminate
	}
	return Failed
}
