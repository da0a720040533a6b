package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/beaconhq/beacon/api/beaconpb"
	"github.com/beaconhq/beacon/bench"
	"github.com/beaconhq/beacon/client"
	"github.com/beaconhq/beacon/internal/supervise"
	"github.com/beaconhq/beacon/lock"
	"github.com/spf13/cobra"
)

func init() {
	extraCommands = append(extraCommands, newLockCmd, newFencedCmd, newLockGuardCmd)
	benchCommands = append(benchCommands, newBenchLockCmd)
}

type lockFlags struct {
	ttl, timeout, grace time.Duration
	limit               int
}

func newLockCmd(g *globals) *cobra.Command {
	f := &lockFlags{}
	cmd := &cobra.Command{
		Use:   "lock NAME [--ttl 10s] [--timeout D] [-n N] -- CMD [ARGS...]",
		Short: "Run a command only while holding a distributed lock",
		Long: `Run CMD only while holding the lock NAME (or, with -n N, one of its N slots).

beacon opens a session with the agent, waits for the lock, and runs CMD with
BEACON_LOCK_NAME, BEACON_LOCK_KEY and BEACON_LOCK_TOKEN in its environment (the
key and fencing token for ` + "`beacon fenced`" + `). stdin, stdout and stderr are CMD's;
signals beacon receives go to CMD's process group; CMD's exit code is beacon's.
When CMD exits, whatever it left running in its process group is killed, and
the lock is released.

If the lock is lost (the session's lease ended, the key was deleted, the agent
is gone), CMD's group gets SIGTERM, then SIGKILL after --grace, and beacon exits
1. If beacon itself dies, even by kill -9, CMD dies with it (Linux: CMD has
PR_SET_PDEATHSIG=SIGKILL, and a guard process kills CMD's group), and the
agent revokes the session's lease at once, so the next waiter gets the lock
within milliseconds; --ttl matters only if the agent itself dies.

The lock is etcd's concurrency.Mutex layout under /beacon/locks/NAME, so
` + "`etcdctl lock /beacon/locks/NAME`" + ` and ` + "`beacon lock NAME`" + ` exclude each other.`,
		Example: `  beacon lock nightly-report -- ./report.sh --full
  beacon lock deploy --timeout 30s -- make deploy
  beacon lock encoders -n 4 -- ffmpeg -i in.mp4 out.webm`,
		Args: func(cmd *cobra.Command, args []string) error {
			if dash := cmd.ArgsLenAtDash(); len(args) < 2 || (dash != -1 && dash != 1) {
				return &usageError{errorf("give the lock's name, then -- and the command: beacon lock NAME -- CMD [ARGS...]")}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			switch {
			case f.ttl < time.Second || f.ttl > 24*time.Hour:
				return &usageError{errorf("--ttl %s: give 1s to 24h", f.ttl)}
			case f.timeout < 0:
				return &usageError{errorf("--timeout %s must not be negative", f.timeout)}
			case f.limit < 1 || f.limit > lock.MaxLimit:
				return &usageError{errorf("-n %d: give 1 to %d", f.limit, lock.MaxLimit)}
			case f.grace < 0:
				return &usageError{errorf("--grace %s must not be negative", f.grace)}
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
	fl := cmd.Flags()
	fl.DurationVar(&f.ttl, "ttl", 10*time.Second, "session TTL: how long the lock outlives the agent if the agent dies")
	fl.DurationVar(&f.timeout, "timeout", 0, "give up waiting for the lock after this long (0: wait forever)")
	fl.IntVarP(&f.limit, "limit", "n", 1, "semaphore: up to N holders at once")
	fl.DurationVar(&f.grace, "grace", 10*time.Second, "after the lock is lost, time between SIGTERM and SIGKILL to CMD")
	return cmd
}

// The signals beacon forwards to CMD's group while it runs; while waiting
// for the lock, the first four give up.
var lockSignals = []os.Signal{syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT,
	syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGWINCH}

func runLock(ctx context.Context, g *globals, name string, argv []string, f *lockFlags) (int, error) {
	sigs := make(chan os.Signal, 16)
	signal.Notify(sigs, lockSignals...)
	defer signal.Stop(sigs)

	c, err := client.New(g.agent)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	octx, cancel := context.WithTimeout(ctx, g.callTimeout)
	sess, err := c.NewSession(octx, client.WithTTL(f.ttl), client.WithName("beacon lock "+name))
	cancel()
	if err != nil {
		return 0, err
	}
	defer sess.Close()
	lc := beaconpb.NewLockClient(c.Conn())

	grant, err := waitLock(ctx, g, lc, sess, sigs, &beaconpb.LockAcquireRequest{
		Name: name, SessionId: sess.ID, TimeoutMs: f.timeout.Milliseconds(), Limit: int32(f.limit)})
	if err != nil {
		return 0, err
	}
	release := func() {
		rctx, cancel := context.WithTimeout(context.Background(), g.callTimeout)
		defer cancel()
		_, _ = lc.Release(rctx, &beaconpb.LockReleaseRequest{Key: grant.Key, Token: grant.Token, SessionId: sess.ID})
	}
	wctx, wcancel := context.WithCancel(ctx)
	defer wcancel()
	lost, err := watchLock(wctx, lc, grant)
	if err != nil {
		release()
		return 0, fmt.Errorf("lock %q: lost before %s started: %v", name, argv[0], oneLine(err))
	}

	self, err := os.Executable()
	if err != nil {
		release()
		return 0, err
	}
	env := append(os.Environ(), "BEACON_LOCK_NAME="+name, "BEACON_LOCK_KEY="+grant.Key,
		"BEACON_LOCK_TOKEN="+strconv.FormatInt(grant.Token, 10))
	if g.agent != "" {
		env = append(env, "BEACON_AGENT="+g.agent)
	}
	command, err := supervise.StartCommand(supervise.CommandOptions{Args: argv, Env: env, GuardArgs: []string{self, "lock-guard"}})
	if err != nil {
		release()
		return 0, fmt.Errorf("lock %q: %v", name, err)
	}

	var lostWhy string
	loseOnce := func(why string) {
		if lostWhy == "" {
			lostWhy = why
			go command.Stop(f.grace)
		}
	}
	sessDone, sessEvents := sess.Done(), sess.Events()
	for running := true; running; {
		select {
		case <-command.Done():
			running = false
		case sig := <-sigs:
			command.Signal(sig.(syscall.Signal))
		case why := <-lost:
			loseOnce(why)
		case <-sessDone:
			sessDone = nil
			loseOnce("the session with the agent ended (is the agent running?)")
		case ev, ok := <-sessEvents:
			if !ok {
				sessEvents = nil
			} else if ev.GetLeaseLost() != nil {
				loseOnce("the session's lease ended")
			}
		}
	}
	code := command.Finish()
	if lostWhy != "" {
		return 0, fmt.Errorf("lock %q lost while %s ran, so it was stopped: %s", name, argv[0], lostWhy)
	}
	release()
	return code, nil
}

// waitLock acquires, giving up on the first interrupting signal.
func waitLock(ctx context.Context, g *globals, lc beaconpb.LockClient, sess *client.Session, sigs <-chan os.Signal, req *beaconpb.LockAcquireRequest) (*beaconpb.LockAcquireResponse, error) {
	actx, cancel := context.WithCancel(ctx)
	defer cancel()
	if req.TimeoutMs > 0 {
		actx, cancel = context.WithTimeout(actx, time.Duration(req.TimeoutMs)*time.Millisecond+g.callTimeout)
		defer cancel()
	}
	type result struct {
		r   *beaconpb.LockAcquireResponse
		err error
	}
	got := make(chan result, 1)
	go func() {
		r, err := lc.Acquire(actx, req)
		got <- result{r, err}
	}()
	for {
		select {
		case res := <-got:
			return res.r, res.err
		case sig := <-sigs:
			switch sig {
			case syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT:
				return nil, fmt.Errorf("lock %q: interrupted (%v) while waiting", req.Name, sig)
			}
		case <-sess.Done():
			return nil, fmt.Errorf("lock %q: the session with the agent ended while waiting", req.Name)
		}
	}
}

// watchLock waits for the agent to confirm the grant, then reports the
// first sign of its end on the returned channel.
func watchLock(ctx context.Context, lc beaconpb.LockClient, grant *beaconpb.LockAcquireResponse) (<-chan string, error) {
	ws, err := lc.Watch(ctx, &beaconpb.LockWatchRequest{Key: grant.Key, Token: grant.Token})
	if err != nil {
		return nil, err
	}
	ev, err := ws.Recv()
	if err != nil {
		return nil, err
	}
	if ev.State != beaconpb.LockState_LOCK_STATE_HELD {
		return nil, fmt.Errorf("%s", ev.Reason)
	}
	lost := make(chan string, 1)
	go func() {
		ev, err := ws.Recv()
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			lost <- "the agent can no longer confirm the lock: " + oneLine(err)
		default:
			lost <- ev.Reason
		}
	}()
	return lost, nil
}

func newLockGuardCmd(*globals) *cobra.Command {
	return &cobra.Command{
		Use:    "lock-guard",
		Short:  "Kill a process group when stdin ends (for beacon lock)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE:   func(*cobra.Command, []string) error { return supervise.Guard(os.Stdin) },
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
				if p.format == "json" {
					return p.json(resp)
				}
				if r := resp.Results[0]; args[0] == "get" {
					if !r.Found {
						return errorf("not found: %s", r.Key)
					}
					fmt.Fprintln(p.w, string(r.Value))
				}
				return nil
			})
		},
	}
	envToken, _ := strconv.ParseInt(os.Getenv("BEACON_LOCK_TOKEN"), 10, 64)
	cmd.Flags().StringVar(&key, "lock-key", os.Getenv("BEACON_LOCK_KEY"), "the grant's lock key (default $BEACON_LOCK_KEY)")
	cmd.Flags().Int64Var(&token, "token", envToken, "the grant's fencing token (default $BEACON_LOCK_TOKEN)")
	return cmd
}
