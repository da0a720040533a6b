package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"time"

	"github.com/beaconhq/beacon/api/beaconpb"
	"github.com/beaconhq/beacon/bench"
	"github.com/beaconhq/beacon/client"
	"github.com/beaconhq/beacon/internal/supervise"
	"github.com/beaconhq/beacon/lock"
	"github.com/spf13/cobra"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func init() {
	extraCommands = append(extraCommands, newLockCmd, newFencedCmd, newCmdGuardCmd)
	benchCommands = append(benchCommands, newBenchLockCmd)
}

type lockFlags struct {
	holdFlags
	wait  time.Duration
	limit int
}

func newLockCmd(g *globals) *cobra.Command {
	f := &lockFlags{}
	cmd := &cobra.Command{
		Use:   "lock NAME [--ttl 10s] [--grace 2s] [--wait D] [-n N] -- CMD [ARGS...]",
		Short: "Run a command only while holding a distributed lock",
		Long: `Run CMD only while holding the lock NAME (or, with -n N, one of its N slots).

beacon opens a session with the agent, waits for the lock, and runs CMD with
BEACON_LOCK_NAME, BEACON_LOCK_KEY and BEACON_LOCK_TOKEN in its environment (the
key and fencing token for ` + "`beacon fenced`" + `). stdin, stdout and stderr are CMD's;
signals beacon receives go to CMD's process group; CMD's exit code is beacon's.
When CMD exits, whatever it left running in its process group is killed, and
the lock is released.

The grant has a deadline on beacon's own clock: the time beacon last asked
the agent to confirm the session's lease, plus the TTL etcd confirmed, less
1% and 10ms. beacon asks at least every quarter of --ttl. CMD gets SIGTERM
--grace before that deadline and SIGKILL at it, so CMD has stopped before the
lease can end anywhere and the lock be granted to someone else: when the
agent is paused or killed, the host cut off, or beacon itself was paused.
When the agent reports the lock gone from etcd (its key deleted, its lease
revoked), someone else may hold it already: CMD gets SIGTERM and SIGKILL at
once. When the agent stops or can no longer confirm the lock, CMD gets
SIGTERM at once and SIGKILL --grace later (at the deadline at the latest).
Either way beacon then exits 1.

` + holdSignalsHelp + `

If beacon itself dies, even by kill -9, CMD dies with it (Linux: CMD has
PR_SET_PDEATHSIG=SIGKILL, and a guard process kills CMD's group), and the
agent revokes the session's lease at once, so the next waiter gets the lock
within milliseconds.

The lock is etcd's concurrency.Mutex layout under /beacon/locks/NAME, so
` + "`etcdctl lock /beacon/locks/NAME`" + ` and ` + "`beacon lock NAME`" + ` exclude each other.`,
		Example: `  beacon lock nightly-report -- ./report.sh --full
  beacon lock deploy --wait 30s -- make deploy
  beacon lock encoders -n 4 -- ffmpeg -i in.mp4 out.webm`,
		Args: func(cmd *cobra.Command, args []string) error {
			if dash := cmd.ArgsLenAtDash(); len(args) < 2 || (dash != -1 && dash != 1) {
				return &usageError{errorf("give the lock's name, then -- and the command: beacon lock NAME -- CMD [ARGS...]")}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := f.check(cmd); err != nil {
				return err
			}
			wait, err := waitFlag(cmd)
			switch {
			case err != nil:
				return err
			case f.wait < 0:
				return &usageError{errorf("%s %s must not be negative", wait, f.wait)}
			case f.limit < 1 || f.limit > lock.MaxLimit:
				return &usageError{errorf("-n %d: give 1 to %d", f.limit, lock.MaxLimit)}
			}
			code, err := runLock(cmd.Context(), g, args[0], args[1:], f)
			if err != nil {
				return err
			}
			if code != 0 {
				os.Exit(code) // everything is released and closed by now
			}
			return nil
		},
	}
	f.add(cmd, "the lock")
	fl := cmd.Flags()
	bindWait(cmd, &f.wait, "give up waiting for the lock after this long (0: wait forever)")
	fl.IntVarP(&f.limit, "limit", "n", 1, "semaphore: up to N holders at once")
	return cmd
}

func runLock(ctx context.Context, g *globals, name string, argv []string, f *lockFlags) (int, error) {
	sigs := make(chan os.Signal, 16)
	signal.Notify(sigs, holdSignals...)
	defer signal.Stop(sigs)

	c, err := client.New(g.agent)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	octx, cancel := context.WithTimeout(ctx, g.callTimeout)
	sess, err := c.NewSession(octx, f.sessionOptions("beacon lock "+name)...)
	cancel()
	if err != nil {
		return 0, err
	}
	defer sess.Close()

	hold, err := waitLock(ctx, g, c, sess, sigs, name, f)
	if err != nil {
		return 0, err
	}
	release := func() {
		rctx, cancel := context.WithTimeout(context.Background(), g.callTimeout)
		defer cancel()
		_ = hold.Release(rctx)
	}
	env := append(os.Environ(), "BEACON_LOCK_NAME="+name, "BEACON_LOCK_KEY="+hold.Key,
		"BEACON_LOCK_TOKEN="+strconv.FormatInt(hold.Token, 10))
	res, err := runUnderHold(ctx, g, hold, argv, env, &f.holdFlags, sigs, nil)
	release() // CMD and its group are dead by now
	if err != nil {
		return 0, fmt.Errorf("lock %q: %v", name, err)
	}
	if res.Lost != nil {
		return 0, fmt.Errorf("lock %q lost while %s ran, so it was stopped: %s", name, argv[0], oneLine(res.Lost))
	}
	return res.Code, nil
}

// waitLock acquires, giving up on the first interrupting signal.
func waitLock(ctx context.Context, g *globals, c *client.Client, sess *client.Session, sigs <-chan os.Signal, name string, f *lockFlags) (*client.Hold, error) {
	actx, cancel := context.WithCancel(ctx)
	defer cancel()
	opts := []client.LockOption{client.LockLimit(f.limit)}
	if f.wait > 0 {
		opts = append(opts, client.LockTimeout(f.wait))
		actx, cancel = context.WithTimeout(actx, f.wait+g.callTimeout)
		defer cancel()
	}
	type result struct {
		h   *client.Hold
		err error
	}
	got := make(chan result, 1)
	go func() {
		for {
			h, err := c.Lock(actx, sess, name, opts...)
			// Granted, but the lease could not be confirmed before CMD
			// started (the cluster was changing leaders): wait in line again.
			// Or the session's lease ended while it waited (FailedPrecondition):
			// the session goes on under a new lease, and so does the wait.
			retry := errors.Is(err, client.ErrLost) || errors.Is(err, client.ErrLeaseEnded) ||
				status.Code(err) == codes.FailedPrecondition
			if retry && actx.Err() == nil {
				select {
				case <-sess.Done():
				case <-time.After(100 * time.Millisecond):
					continue
				}
			}
			got <- result{h, err}
			return
		}
	}()
	for {
		select {
		case res := <-got:
			return res.h, res.err
		case sig := <-sigs:
			if endsWait(sig) {
				cancel()
				if res := <-got; res.err == nil { // won just now: give it back
					rctx, rcancel := context.WithTimeout(context.Background(), g.callTimeout)
					_ = res.h.Release(rctx)
					rcancel()
				}
				return nil, &exitError{code: signalCode(sig), err: fmt.Errorf("lock %q: interrupted (%v) while waiting", name, sig)}
			}
		case <-sess.Done():
			return nil, fmt.Errorf("lock %q: the session with the agent ended while waiting", name)
		case <-sess.Stopping():
			cancel()
			if res := <-got; res.err == nil {
				rctx, rcancel := context.WithTimeout(context.Background(), g.callTimeout)
				_ = res.h.Release(rctx)
				rcancel()
			}
			return nil, fmt.Errorf("lock %q: the agent is stopping", name)
		}
	}
}

// newCmdGuardCmd is the guard process of every CMD beacon runs under a
// hold (lock, elect, queue reserve): it kills CMD's process group when
// beacon dies. lock-guard, its first name, stays as an alias.
func newCmdGuardCmd(*globals) *cobra.Command {
	return &cobra.Command{
		Use:     "cmd-guard",
		Aliases: []string{"lock-guard"},
		Short:   "Kill a process group when stdin ends (for the CMD of beacon lock, elect and queue reserve)",
		Hidden:  true,
		Args:    cobra.NoArgs,
		RunE:    func(*cobra.Command, []string) error { return supervise.Guard(os.Stdin) },
	}
}

func newBenchLockCmd() *cobra.Command {
	o := bench.LockOptions{}
	cmd := &cobra.Command{
		Use:   "lock",
		Short: "Lock acquire+release latency and contended handoffs/s, beside etcd's concurrency.Mutex",
		Long: `Uncontended acquire+release latency (p50/p99) and handoffs/s with N
contenders on one lock, through the agent's Lock service and, in the same run on
the same cluster, with etcd's concurrency.Mutex. Without --agent it starts its
own agent.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.Samples < 10 || o.Contenders < 2 || o.Duration < 100*time.Millisecond {
				return &usageError{errorf("--samples must be at least 10, --contenders at least 2, --duration at least 100ms")}
			}
			o.Agent, _ = cmd.Flags().GetString("agent")
			if o.Agent != "" && o.Endpoint == "" {
				return &usageError{errorf("with --agent, give --endpoint (the agent's etcd client URL) for the plain way")}
			}
			return bench.Lock(cmd.Context(), cmd.OutOrStdout(), o)
		},
	}
	cmd.Flags().StringVar(&o.Endpoint, "endpoint", "", "the agent's etcd client URL, for concurrency.Mutex (with --agent)")
	cmd.Flags().IntVar(&o.Samples, "samples", 500, "uncontended acquire+release pairs per side")
	cmd.Flags().IntVar(&o.Contenders, "contenders", 8, "contenders for the handoff test")
	cmd.Flags().DurationVar(&o.Duration, "duration", 3*time.Second, "length of the handoff test per side")
	return cmd
}

func newFencedCmd(g *globals) *cobra.Command {
	var key string
	var token int64
	cmd := &cobra.Command{
		Use:   "fenced put KEY VALUE [KEY VALUE...] | del KEY... | get KEY",
		Short: "Write (or read) etcd keys only while a lock grant still holds",
		Long: `Run one put, delete or get in an etcd transaction that applies only while the
lock grant still holds: its key exists with the grant's fencing token (create
revision) under its lease; several puts (or deletes) go in one transaction. A
stale grant fails with "failed precondition" and nothing is written. Inside ` + "`beacon lock NAME -- CMD`" + `, the grant comes from
BEACON_LOCK_KEY and BEACON_LOCK_TOKEN.

Inside ` + "`beacon elect NAME -- CMD`" + `, the leadership fences the same way, from
BEACON_LEADER_KEY and BEACON_LEADER_REV: a superseded leader's writes fail.

Keys are plain etcd keys outside beacon's namespace (/beacon/), or under
/beacon/config/. get prints the value.`,
		Example: `  beacon lock counter -- sh -c 'n=$(beacon fenced get /app/counter || echo 0); beacon fenced put /app/counter $((n+1))'`,
		Args: func(cmd *cobra.Command, args []string) error {
			n := len(args) - 1
			ok := n > 0 && ((args[0] == "put" && n%2 == 0) || args[0] == "del" || (args[0] == "get" && n == 1))
			if !ok {
				return &usageError{errorf("give put KEY VALUE [KEY VALUE...], del KEY... or get KEY")}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if key == "" || token <= 0 {
				return &usageError{errorf("--lock-key and --token (or BEACON_LOCK_KEY and BEACON_LOCK_TOKEN) must name a lock grant")}
			}
			p, err := newPrinter(cmd.OutOrStdout(), g.output)
			if err != nil {
				return err
			}
			var ops []*beaconpb.LockFencedOp
			switch args[0] {
			case "put":
				for i := 1; i < len(args); i += 2 {
					ops = append(ops, &beaconpb.LockFencedOp{Type: beaconpb.LockOpType_LOCK_OP_PUT, Key: args[i], Value: []byte(args[i+1])})
				}
			case "del":
				for _, k := range args[1:] {
					ops = append(ops, &beaconpb.LockFencedOp{Type: beaconpb.LockOpType_LOCK_OP_DELETE, Key: k})
				}
			default:
				ops = append(ops, &beaconpb.LockFencedOp{Type: beaconpb.LockOpType_LOCK_OP_GET, Key: args[1]})
			}
			return withAgent(cmd, g, func(ctx context.Context, c *client.Client) error {
				resp, err := beaconpb.NewLockClient(c.Conn()).Fenced(ctx, &beaconpb.LockFencedRequest{
					Key: key, Token: token, Ops: ops})
				if err != nil {
					return err
				}
				if p.IsJSON() {
					return p.JSON(resp)
				}
				if r := resp.Results[0]; args[0] == "get" {
					if !r.Found {
						return errorf("not found: %s", r.Key)
					}
					fmt.Fprintln(p.W, string(r.Value))
				}
				return nil
			})
		},
	}
	// Inside beacon lock, the grant; inside beacon elect, the leadership.
	envKey, envTok := os.Getenv("BEACON_LOCK_KEY"), os.Getenv("BEACON_LOCK_TOKEN")
	if envKey == "" {
		envKey, envTok = os.Getenv("BEACON_LEADER_KEY"), os.Getenv("BEACON_LEADER_REV")
	}
	envToken, _ := strconv.ParseInt(envTok, 10, 64)
	cmd.Flags().StringVar(&key, "lock-key", envKey, "the grant's lock key, or a leader key (default $BEACON_LOCK_KEY, else $BEACON_LEADER_KEY)")
	cmd.Flags().Int64Var(&token, "token", envToken, "the grant's fencing token, or the leader's rev (default $BEACON_LOCK_TOKEN, else $BEACON_LEADER_REV)")
	return cmd
}
