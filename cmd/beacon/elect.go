package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/beaconhq/beacon/api/beaconpb"
	"github.com/beaconhq/beacon/bench"
	"github.com/beaconhq/beacon/client"
	"github.com/beaconhq/beacon/election"
	"github.com/beaconhq/beacon/internal/supervise"
	"github.com/spf13/cobra"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func init() {
	extraCommands = append(extraCommands, newElectCmd)
	benchCommands = append(benchCommands, newBenchElectionCmd, newPlainElectCmd)
}

type electOptions struct {
	holdFlags
	proposal string
	wait     time.Duration
	waitFlag string
	observe  bool
}

func newElectCmd(g *globals) *cobra.Command {
	o := &electOptions{}
	cmd := &cobra.Command{
		Use:   "elect NAME [--proposal V] [--ttl 10s] [--grace 2s] [--wait D] [-- CMD ARGS...]",
		Short: "Run CMD only while this process leads the election NAME, or observe its leaders",
		Long: `Campaign in the election NAME in a session of the local agent and run CMD
only while leading, with BEACON_LEADER_KEY and BEACON_LEADER_REV (the leader's
revision, higher for every new leader) in its environment.

The leadership has a deadline on beacon's own clock, as beacon lock's grant
has (see beacon lock --help): CMD gets SIGTERM --grace before it and SIGKILL
at it, so CMD has stopped before the lease can end and another candidate
lead, even when the agent is paused or the host cut off. When the agent
reports the leadership gone from etcd, CMD gets SIGTERM and SIGKILL at once;
when the agent stops or cannot confirm it, SIGTERM at once and SIGKILL
--grace later (at the deadline at the latest). Then beacon campaigns again.
When CMD exits on its own beacon resigns and exits with CMD's code. CMD
runs in a process group of its own and dies with beacon, even if beacon is
killed with kill -9; the agent then revokes the session and the next
candidate leads at once.

` + holdSignalsHelp + `

Without CMD, beacon prints the leader key and rev on stdout when elected
and holds the leadership until interrupted.
With --observe, it prints the leader and every change, one line each
(-w json: one JSON object a line).

The keys are etcd's concurrency.Election layout, so beacon elect NAME and
etcdctl elect /beacon/elections/NAME campaign in the same election.`,
		Example: `  beacon elect scheduler -- ./scheduler --port 9000
  beacon elect --observe scheduler -w json`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name, argv := args[0], args[1:]
			if dash := cmd.ArgsLenAtDash(); dash != -1 && dash != 1 {
				return &usageError{errorf("elect takes one NAME, then -- CMD ARGS...")}
			} else if dash == -1 && len(args) > 1 {
				return &usageError{errorf("elect takes one NAME; put CMD after --")}
			}
			if err := election.ValidateName(name); err != nil {
				return &usageError{errorf("elect: %v", err)}
			}
			if o.observe {
				if len(argv) > 0 || cmd.Flags().Changed("proposal") {
					return &usageError{errorf("elect --observe takes only NAME")}
				}
				p, err := newPrinter(cmd.OutOrStdout(), g.output)
				if err != nil {
					return err
				}
				return electObserve(cmd.Context(), g, name, p)
			}
			if err := o.check(cmd); err != nil {
				return err
			}
			var err error
			if o.waitFlag, err = waitFlag(cmd); err != nil {
				return err
			}
			if o.wait < 0 || o.wait > 24*time.Hour {
				return &usageError{errorf("%s %s is not from 0 (none) to 24h", o.waitFlag, o.wait)}
			}
			if o.proposal == "" {
				host, _ := os.Hostname()
				o.proposal = fmt.Sprintf("%s:%d", host, os.Getpid())
			}
			if err := election.ValidateProposal(o.proposal); err != nil {
				return &usageError{errorf("--%v", err)}
			}
			r := &electRunner{g: g, name: name, argv: argv, o: o, stdout: cmd.OutOrStdout(), stderr: cmd.ErrOrStderr()}
			code, err := r.run(cmd.Context())
			if err != nil {
				return err
			}
			os.Exit(code)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.proposal, "proposal", "", "the leader's value, shown to observers (default host:pid)")
	o.add(cmd, "the leadership")
	bindWait(cmd, &o.wait, "give up if not elected within this time (0: wait forever)")
	f.BoolVar(&o.observe, "observe", false, "print the leader and every change instead of campaigning")
	return cmd
}

// electObserve prints the election's leader and its changes until
// interrupted.
func electObserve(ctx context.Context, g *globals, name string, p *printer) error {
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	c, err := client.New(g.agent)
	if err != nil {
		return err
	}
	defer c.Close()
	stream, err := beaconpb.NewElectionClient(c.Conn()).Observe(ctx, &beaconpb.ElectionObserveRequest{Name: name})
	if err != nil {
		return err
	}
	for {
		ev, err := stream.Recv()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		if p.IsJSON() {
			// One compact line per change, for line-oriented scripts.
			if err := p.JSONLine(ev); err != nil {
				return err
			}
			continue
		}
		if l := ev.Leader; l != nil {
			fmt.Fprintf(p.W, "leader rev %d key %s proposal %q (revision %d)\n", l.Rev, l.Key, l.Proposal, ev.Revision)
		} else {
			fmt.Fprintf(p.W, "no leader (revision %d)\n", ev.Revision)
		}
	}
}

// electRunner campaigns, runs CMD while leading, and campaigns again
// after a loss, for as long as beacon runs.
type electRunner struct {
	g      *globals
	name   string
	argv   []string
	o      *electOptions
	stdout io.Writer
	stderr io.Writer

	c    *client.Client
	sigs chan os.Signal
}

// errElectReopen: the session broke; open a new one and campaign again.
var errElectReopen = errors.New("session ended")

func (r *electRunner) logf(format string, args ...any) {
	fmt.Fprintf(r.stderr, "beacon: elect %s: "+format+"\n", append([]any{r.name}, args...)...)
}

// run returns the exit code for beacon, or an error to print.
func (r *electRunner) run(ctx context.Context) (int, error) {
	r.sigs = make(chan os.Signal, 8)
	signal.Notify(r.sigs, holdSignals...)
	defer signal.Stop(r.sigs)
	c, err := client.New(r.g.agent)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	r.c = c

	backoff := 100 * time.Millisecond
	for attempt := 0; ; attempt++ {
		octx, cancel := context.WithTimeout(ctx, r.g.callTimeout)
		sess, err := c.NewSession(octx, r.o.sessionOptions("elect "+r.name)...)
		cancel()
		if err != nil {
			if attempt == 0 {
				return 0, fmt.Errorf("opening a session: %w", err)
			}
			// The agent went away after we had a session: wait for it to
			// come back, as a supervisor would.
			r.logf("cannot open a session (%s); retrying", oneLine(err))
			if sig, ok := r.pause(backoff); !ok {
				return signalCode(sig), nil
			}
			backoff = min(2*backoff, 2*time.Second)
			continue
		}
		backoff = 100 * time.Millisecond
		code, err := r.session(ctx, sess)
		_ = sess.Close()
		if !errors.Is(err, errElectReopen) {
			return code, err
		}
	}
}

// pause waits d; it reports false with the signal if SIGINT or SIGTERM
// came first.
func (r *electRunner) pause(d time.Duration) (os.Signal, bool) {
	t := time.NewTimer(d)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			return nil, true
		case sig := <-r.sigs:
			if endsWait(sig) {
				return sig, false
			}
		}
	}
}

// session campaigns and leads in one session until beacon is done
// (errElectReopen when the session broke).
func (r *electRunner) session(ctx context.Context, sess *client.Session) (int, error) {
	events := sess.Events()
	for {
		for drained := false; !drained; { // lease changes before this campaign are no news
			select {
			case _, ok := <-events:
				if !ok {
					return 0, errElectReopen
				}
			default:
				drained = true
			}
		}
		leader, sig, err := r.campaign(ctx, sess)
		switch {
		case sig != nil:
			return signalCode(sig), nil
		case err != nil:
			return 0, err
		case leader == nil:
			continue
		}
		code, done, err := r.lead(ctx, sess, leader)
		if done || err != nil {
			return code, err
		}
	}
}

// campaign blocks until elected (leadership set), a terminating signal
// (sig set), or a failure; neither and no error means "campaign again".
func (r *electRunner) campaign(ctx context.Context, sess *client.Session) (*client.Leadership, os.Signal, error) {
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type result struct {
		ld  *client.Leadership
		err error
	}
	done := make(chan result, 1)
	go func() {
		var opts []client.CampaignOption
		if r.o.wait > 0 {
			opts = append(opts, client.CampaignTimeout(r.o.wait))
		}
		ld, err := r.c.Campaign(cctx, sess, r.name, r.o.proposal, opts...)
		done <- result{ld, err}
	}()
	for {
		select {
		case res := <-done:
			if res.err == nil {
				return res.ld, nil, nil
			}
			select {
			case <-sess.Done():
				return nil, nil, errElectReopen
			default:
			}
			if errors.Is(res.err, client.ErrLost) || errors.Is(res.err, client.ErrLeaseEnded) {
				// Won, but the lease ended before it could be held.
				if sig, ok := r.pause(100 * time.Millisecond); !ok {
					return nil, sig, nil
				}
				return nil, nil, nil
			}
			switch status.Code(res.err) {
			case codes.DeadlineExceeded:
				return nil, nil, fmt.Errorf("not elected within %s %s", r.o.waitFlag, r.o.wait)
			case codes.FailedPrecondition: // the session's lease changed while waiting
				if sig, ok := r.pause(100 * time.Millisecond); !ok {
					return nil, sig, nil
				}
				return nil, nil, nil
			case codes.Unavailable:
				if sig, ok := r.pause(time.Second); !ok {
					return nil, sig, nil
				}
				return nil, nil, nil
			}
			return nil, nil, res.err
		case sig := <-r.sigs:
			if !endsWait(sig) {
				continue // no CMD to pass it to
			}
			cancel()
			if res := <-done; res.err == nil { // won just now: give it back
				r.resign(res.ld)
			}
			return nil, sig, nil
		case <-sess.Done():
			cancel()
			if res := <-done; res.err == nil {
				r.resign(res.ld)
			}
			return nil, nil, errElectReopen
		case <-sess.Stopping():
			// The agent waits for this session's close before it stops.
			cancel()
			if res := <-done; res.err == nil {
				r.resign(res.ld)
			}
			return nil, nil, errElectReopen
		}
	}
}

// lead runs CMD while leader. done means beacon should exit with code.
func (r *electRunner) lead(ctx context.Context, sess *client.Session, ld *client.Leadership) (code int, done bool, err error) {
	leader := ld.Leader
	r.logf("leading at rev %d (key %s)", leader.Rev, leader.Key)
	if len(r.argv) == 0 {
		fmt.Fprintf(r.stdout, "%s %d\n", leader.Key, leader.Rev)
		for {
			select {
			case <-ld.Lost():
				r.logf("lost the leadership at rev %d: %s", leader.Rev, oneLine(ld.Err()))
				r.resign(ld)
				return r.afterLoss(sess)
			case sig := <-r.sigs:
				if endsWait(sig) {
					r.resign(ld)
					return 0, true, nil
				}
			}
		}
	}
	env := append(os.Environ(), "BEACON_LEADER_KEY="+leader.Key, "BEACON_LEADER_REV="+strconv.FormatInt(leader.Rev, 10))
	res, err := runUnderHold(ctx, r.g, ld.Hold, r.argv, env, &r.o.holdFlags, r.sigs, nil)
	r.resign(ld) // CMD and its group are dead by now
	switch {
	case err != nil && (errors.Is(err, client.ErrLost) || errors.Is(err, supervise.ErrDeadline)):
		r.logf("lost the leadership at rev %d before %s started: %s", leader.Rev, r.argv[0], oneLine(err))
		return r.afterLoss(sess)
	case err != nil:
		return 0, true, err
	case res.Lost != nil && res.Signal == nil:
		r.logf("lost the leadership at rev %d, so %s was stopped: %s", leader.Rev, r.argv[0], oneLine(res.Lost))
		return r.afterLoss(sess)
	}
	return res.Code, true, nil
}

// afterLoss decides what follows a lost leadership: campaign again in the
// same session if it lives, else in a new one.
func (r *electRunner) afterLoss(sess *client.Session) (int, bool, error) {
	select {
	case <-sess.Done():
		return 0, false, errElectReopen
	case <-sess.Stopping():
		// The agent waits for this session's close before it stops.
		return 0, false, errElectReopen
	default:
		return 0, false, nil
	}
}

// resign gives the leadership up so the next candidate leads at once; if
// the agent cannot be reached the session's end does the same.
func (r *electRunner) resign(ld *client.Leadership) {
	ctx, cancel := context.WithTimeout(context.Background(), r.g.callTimeout)
	defer cancel()
	_ = ld.Release(ctx)
}

func electReason(err error) string {
	if err == nil {
		return "the agent ended the watch"
	}
	return oneLine(err)
}

func signalCode(sig os.Signal) int {
	if s, ok := sig.(syscall.Signal); ok {
		return 128 + int(s)
	}
	return 1
}

func newBenchElectionCmd() *cobra.Command {
	o := bench.ElectionOptions{}
	cmd := &cobra.Command{
		Use:   "election",
		Short: "Leader failover when the leader's process or its agent is killed, beside etcd's concurrency.Election",
		Long: `Failover time: from kill -9 of the leader to the next candidate's Campaign
returning on another agent. Twice: when the leader's process dies (a
` + "`beacon elect NAME -- sleep`" + ` process; its agent revokes the session at once)
and when the leader's agent dies (the lease expires after --agent-ttl).
Beside each, in the same run, the plain way: etcd's concurrency.Election
held by a process of its own, whose death is noticed only when its TTL
runs out. Without --agent it starts its own pair of agents (a member and
a proxy); the agents it kills are proxies it starts for the purpose.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.Samples < 1 || o.PlainSamples < 1 || o.AgentSamples < 1 {
				return &usageError{errorf("--samples, --plain-samples and --agent-samples must be at least 1")}
			}
			if o.TTL < time.Second || o.AgentTTL < 2*time.Second || o.TTL > time.Hour || o.AgentTTL > time.Hour {
				return &usageError{errorf("--ttl must be from 1s and --agent-ttl from 2s (etcd's shortest lease), both at most 1h")}
			}
			o.Agent, _ = cmd.Flags().GetString("agent")
			if o.Agent != "" && o.Endpoint == "" {
				return &usageError{errorf("with --agent, give --endpoint (that agent's etcd client URL) too")}
			}
			return bench.Election(cmd.Context(), cmd.OutOrStdout(), o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.AgentB, "agent-b", "", "the waiters' agent (default --agent)")
	f.StringVar(&o.Endpoint, "endpoint", "", "etcd client URL of --agent, for the plain way")
	f.StringVar(&o.EndpointB, "endpoint-b", "", "etcd client URL for the plain waiters (default --endpoint)")
	f.IntVar(&o.Samples, "samples", 20, "leader processes killed, beacon side")
	f.IntVar(&o.PlainSamples, "plain-samples", 3, "leader processes killed, plain side (each waits out --ttl)")
	f.IntVar(&o.AgentSamples, "agent-samples", 3, "agents killed (and plain leaders killed with --agent-ttl)")
	f.DurationVar(&o.TTL, "ttl", 10*time.Second, "session TTL when the leader process is killed")
	f.DurationVar(&o.AgentTTL, "agent-ttl", 2*time.Second, "session TTL when the leader's agent is killed")
	return cmd
}

// newPlainElectCmd is the plain way's leader process for bench election.
func newPlainElectCmd() *cobra.Command {
	var endpoint, name string
	var ttl time.Duration
	cmd := &cobra.Command{
		Use:    "plain-elect",
		Short:  "Lead an etcd concurrency.Election until killed (for bench election)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGTERM, syscall.SIGINT)
			defer stop()
			return bench.PlainElectLeader(ctx, cmd.OutOrStdout(), endpoint, name, ttl)
		},
	}
	cmd.Flags().StringVar(&endpoint, "endpoint", "", "etcd client URL")
	cmd.Flags().StringVar(&name, "election", "", "election key prefix")
	cmd.Flags().DurationVar(&ttl, "ttl", 10*time.Second, "session TTL")
	return cmd
}
