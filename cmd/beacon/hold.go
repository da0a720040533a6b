package main

import (
	"context"
	"io"
	"os"
	"syscall"
	"time"

	"github.com/beaconhq/beacon/client"
	"github.com/beaconhq/beacon/internal/supervise"
	"github.com/spf13/cobra"
)

// holdFlags are the flags of every command that runs CMD under a hold:
// beacon lock, beacon elect and beacon queue reserve -- CMD.
type holdFlags struct {
	ttl, grace time.Duration
}

// defaultGrace is --grace unless the TTL is too short for it.
const defaultGrace = 2 * time.Second

func (f *holdFlags) add(cmd *cobra.Command, what string) {
	fl := cmd.Flags()
	fl.DurationVar(&f.ttl, "ttl", 10*time.Second, "session TTL: how long "+what+" outlives this host's agent if the agent, the host or the network fails; CMD is stopped within it")
	fl.DurationVar(&f.grace, "grace", defaultGrace, "CMD gets SIGTERM this long before the hold's deadline (or when it is lost) and SIGKILL at the deadline; smaller than --ttl (default 2s, or a quarter of a --ttl under 8s)")
}

// bindWait adds --wait D, how long to wait for a hold (the name queue
// reserve uses too), and --timeout, its older name (DESIGN.md's beacon
// lock --timeout), which sets the same value.
func bindWait(cmd *cobra.Command, d *time.Duration, usage string) {
	f := cmd.Flags()
	f.DurationVar(d, "wait", 0, usage)
	f.DurationVar(d, "timeout", 0, "the same as --wait (its older name)")
}

// waitFlag is the name the wait was given by, for messages; both names at
// once are a usage error.
func waitFlag(cmd *cobra.Command) (string, error) {
	switch f := cmd.Flags(); {
	case f.Changed("wait") && f.Changed("timeout"):
		return "", &usageError{errorf("give --wait or --timeout (its older name), not both")}
	case f.Changed("timeout"):
		return "--timeout", nil
	}
	return "--wait", nil
}

// holdSignalsHelp is what beacon lock, elect and queue reserve -- CMD do
// with the signals they get (supervise.RunWhile and endsWait).
const holdSignalsHelp = `Signals: while CMD runs, every signal beacon gets is passed on to CMD's
process group as the same signal (SIGINT as SIGINT, SIGTERM as SIGTERM).
After SIGINT or SIGTERM, CMD has --grace to exit before its group gets
SIGKILL; then beacon gives the hold back and exits with CMD's status.
SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2 and SIGWINCH are only passed on: CMD may
go on (to reload on SIGHUP, say). While beacon waits for the hold and no
CMD runs yet, SIGINT, SIGTERM, SIGHUP and SIGQUIT make it give up and exit
(128 + the signal's number).`

// check validates the flags, and settles the default grace for short TTLs.
// A lease has whole seconds: the TTL is rounded up first, as the session
// will be, so that the grace is checked against the TTL the hold gets.
func (f *holdFlags) check(cmd *cobra.Command) error {
	f.ttl = (f.ttl + time.Second - 1).Truncate(time.Second)
	switch {
	case f.ttl < time.Second || f.ttl > 24*time.Hour:
		return &usageError{errorf("--ttl %s: give 1s to 24h", f.ttl)}
	case f.grace < 0:
		return &usageError{errorf("--grace %s must not be negative", f.grace)}
	case cmd.Flags().Changed("grace") && f.grace >= f.ttl:
		return &usageError{errorf("--grace %s must be smaller than --ttl %s: CMD must be stopped before the hold's lease can end", f.grace, f.ttl)}
	case !cmd.Flags().Changed("grace"):
		f.grace = min(defaultGrace, f.ttl/4)
	}
	return nil
}

// sessionOptions open a session that confirms its lease often enough
// that a healthy hold never comes within the grace of its deadline.
func (f *holdFlags) sessionOptions(name string) []client.SessionOption {
	return []client.SessionOption{client.WithTTL(f.ttl), client.WithName(name),
		client.WithConfirmEvery((f.ttl - f.grace) / 4)}
}

// holdSignals are the signals beacon lock, elect and queue reserve pass on
// to CMD's group while it runs; while they wait, SIGINT, SIGTERM, SIGHUP
// and SIGQUIT give up and the others are ignored.
var holdSignals = []os.Signal{syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT,
	syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGWINCH}

// endsWait reports whether sig, received while waiting for a hold (no CMD
// runs yet), ends the wait: SIGINT, SIGTERM, SIGHUP, SIGQUIT.
func endsWait(sig os.Signal) bool {
	switch sig {
	case syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT:
		return true
	}
	return false
}

// runUnderHold runs argv while hold holds, supervised: its own process
// group, signals passed on, SIGTERM at deadline - grace, SIGKILL at the
// deadline, and a guard that kills the group if beacon dies. CMD's
// environment is env plus BEACON_AGENT, so that beacon commands in CMD
// reach the same agent.
func runUnderHold(ctx context.Context, g *globals, hold supervise.Hold, argv, env []string, f *holdFlags, sigs <-chan os.Signal, stdin io.Reader) (supervise.Result, error) {
	self, err := os.Executable()
	if err != nil {
		return supervise.Result{}, err
	}
	if g.agent != "" {
		env = append(env, "BEACON_AGENT="+g.agent)
	}
	o := supervise.RunOptions{Args: argv, Env: env, Stdin: stdin, GuardArgs: []string{self, "cmd-guard"}, Grace: f.grace, Signals: sigs}
	return supervise.RunWhile(ctx, hold, o)
}
