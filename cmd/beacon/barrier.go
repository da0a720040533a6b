package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"time"

	"github.com/beaconhq/beacon/barrier"
	"github.com/beaconhq/beacon/bench"
	"github.com/beaconhq/beacon/client"
	"github.com/spf13/cobra"
)

func init() {
	extraCommands = append(extraCommands, newBarrierCmd)
	benchCommands = append(benchCommands, newBenchBarrierCmd)
}

type barrierFlags struct {
	holdFlags
	count     int
	wait      time.Duration
	waitFlag  string
	waitLeave bool
}

func newBarrierCmd(g *globals) *cobra.Command {
	f := &barrierFlags{}
	cmd := &cobra.Command{
		Use:   "barrier NAME --count N [--timeout D] [--wait-leave] [--ttl 10s] [--grace 2s] -- CMD [ARGS...]",
		Short: "Run a command once N participants have entered the barrier NAME",
		Long: `Enter the double barrier NAME in a session of the local agent, wait until
--count participants (this one included, on any hosts) have entered, then run
CMD on all of them, with BEACON_BARRIER_NAME and BEACON_BARRIER_ROUND in its
environment. When CMD exits this participant leaves; with --wait-leave, beacon
then waits until every participant of the round has left before it exits.
beacon exits with CMD's code.

A participant that dies (even by kill -9) is removed at once by its session,
so the others never wait for a dead one: a replacement may take its place.
One that dies after the barrier tripped has left, as far as --wait-leave is
concerned. Every participant must give the same --count: one whose count
differs from those already waiting is refused (failed precondition, naming
both). A participant that arrives after a round tripped starts the next
round, so a name can be used again and again.

--timeout bounds the wait to enter, and then the wait for the others to
leave: when it runs out beacon exits 1 with one line naming how many are
missing and who is present ("waiting for 2 of 5; present: a (pid 12), ...").

CMD runs under the participation as beacon lock's CMD runs under its grant
(see beacon lock --help): it has the participation's deadline, and gets
SIGTERM --grace before it and SIGKILL at it, so it has stopped before the
others can count this participant as left.

` + holdSignalsHelp,
		Example: `  beacon barrier deploy --count 5 -- ./migrate.sh
  beacon barrier load-test --count 3 --timeout 2m --wait-leave -- ./hammer.sh`,
		Args: func(cmd *cobra.Command, args []string) error {
			if dash := cmd.ArgsLenAtDash(); len(args) < 2 || dash != 1 {
				return &usageError{errorf("give the barrier's name, then -- and the command: beacon barrier NAME --count N -- CMD [ARGS...]")}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := f.check(cmd); err != nil {
				return err
			}
			var err error
			if f.waitFlag, err = waitFlag(cmd); err != nil {
				return err
			}
			switch {
			case f.wait < 0 || f.wait > 24*time.Hour:
				return &usageError{errorf("%s %s is not from 0 (none) to 24h", f.waitFlag, f.wait)}
			case !cmd.Flags().Changed("count"):
				return &usageError{errorf("barrier: give --count N, the number of participants")}
			case f.count < 1 || f.count > barrier.MaxParticipantsCeiling:
				return &usageError{errorf("--count %d: give 1 to %d (and at most the agent's max-barrier-participants)", f.count, barrier.MaxParticipantsCeiling)}
			}
			if err := barrier.ValidateName(args[0]); err != nil {
				return &usageError{errorf("barrier: %v", err)}
			}
			code, err := runBarrier(cmd.Context(), g, args[0], args[1:], f)
			if err != nil {
				return err
			}
			if code != 0 {
				os.Exit(code) // everything is left and closed by now
			}
			return nil
		},
	}
	f.add(cmd, "the participation")
	fl := cmd.Flags()
	fl.IntVarP(&f.count, "count", "n", 0, "the number of participants the barrier waits for (all must give the same)")
	bindWait(cmd, &f.wait, "give up entering, and waiting for the others to leave, after this long (0: wait forever)")
	fl.BoolVar(&f.waitLeave, "wait-leave", false, "after CMD exits, wait until every participant of the round has left")
	return cmd
}

func runBarrier(ctx context.Context, g *globals, name string, argv []string, f *barrierFlags) (int, error) {
	sigs := make(chan os.Signal, 16)
	signal.Notify(sigs, holdSignals...)
	defer signal.Stop(sigs)

	c, err := client.New(g.agent)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	octx, cancel := context.WithTimeout(ctx, g.callTimeout)
	sess, err := c.NewSession(octx, f.sessionOptions("beacon barrier "+name)...)
	cancel()
	if err != nil {
		return 0, err
	}
	defer sess.Close()

	var opts []client.BarrierOption
	if f.wait > 0 {
		opts = append(opts, client.BarrierTimeout(f.wait))
	}
	b := c.Barrier(sess, name, f.count, opts...)
	entry, err := barrierWait(ctx, g, sess, sigs, name, "entering", func(ctx context.Context) (*client.BarrierEntry, error) {
		return b.Enter(ctx)
	}, f)
	if err != nil {
		return 0, err
	}
	env := append(os.Environ(), "BEACON_BARRIER_NAME="+name, "BEACON_BARRIER_ROUND="+strconv.FormatInt(entry.Round, 10))
	res, err := runUnderHold(ctx, g, entry.Hold, argv, env, &f.holdFlags, sigs, nil)
	rctx, rcancel := context.WithTimeout(context.Background(), g.callTimeout)
	_ = entry.Leave(rctx) // CMD and its group are dead by now
	rcancel()
	switch {
	case err != nil:
		return 0, fmt.Errorf("barrier %q: %v", name, err)
	case res.Lost != nil && res.Signal == nil:
		return 0, fmt.Errorf("barrier %q: the participation was lost while %s ran, so it was stopped: %s", name, argv[0], oneLine(res.Lost))
	case !f.waitLeave || res.Signal != nil:
		return res.Code, nil
	}
	_, err = barrierWait(ctx, g, sess, sigs, name, "waiting for the others to leave", func(ctx context.Context) (struct{}, error) {
		return struct{}{}, entry.WaitLeft(ctx, nil)
	}, f)
	if err != nil {
		return 0, err
	}
	return res.Code, nil
}

// barrierWait runs call (entering, or waiting for the others to leave),
// giving up on the first interrupting signal (exit 128+N) or when the
// session ends.
func barrierWait[T any](ctx context.Context, g *globals, sess *client.Session, sigs <-chan os.Signal, name, what string,
	call func(context.Context) (T, error), f *barrierFlags) (T, error) {
	var zero T
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if f.wait > 0 {
		// The agent gives up at f.wait and says why; this is in case it
		// cannot.
		wctx, cancel = context.WithTimeout(wctx, f.wait+g.callTimeout)
		defer cancel()
	}
	type result struct {
		v   T
		err error
	}
	got := make(chan result, 1)
	go func() {
		v, err := call(wctx)
		got <- result{v, err}
	}()
	for {
		select {
		case res := <-got:
			return res.v, res.err
		case sig := <-sigs:
			if endsWait(sig) {
				cancel()
				<-got // an entry made just now goes with the session
				return zero, &exitError{code: signalCode(sig), err: fmt.Errorf("barrier %q: interrupted (%v) while %s", name, sig, what)}
			}
		case <-sess.Done():
			return zero, fmt.Errorf("barrier %q: the session with the agent ended while %s", name, what)
		case <-sess.Stopping():
			return zero, fmt.Errorf("barrier %q: the agent is stopping", name)
		}
	}
}

func newBenchBarrierCmd() *cobra.Command {
	o := bench.BarrierOptions{}
	var agents, endpoints string
	cmd := &cobra.Command{
		Use:   "barrier",
		Short: "Barrier trip time with N participants on 3 agents, beside etcd's recipe.DoubleBarrier",
		Long: `From the moment the last of --participants calls Enter to the moment Enter has
returned on all of them (when each would start CMD), p50 and max over
--samples rounds; participants spread over the agents. In the same run, the
plain way: etcd's recipe.DoubleBarrier, each participant in a
concurrency.Session on its agent's etcd endpoint. Without --agents it starts
its own three agents: a member and two proxies.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.Participants < 2 || o.Participants > 1024 || o.Samples < 1 || o.Samples > 10000 {
				return &usageError{errorf("--participants must be 2 to 1024 and --samples 1 to 10000")}
			}
			if agents != "" {
				o.Agents, o.Endpoints = strings.Split(agents, ","), strings.Split(endpoints, ",")
				if endpoints == "" || len(o.Agents) != len(o.Endpoints) {
					return &usageError{errorf("with --agents, give --endpoints: each agent's etcd client URL, in the same order")}
				}
			}
			return bench.Barrier(cmd.Context(), cmd.OutOrStdout(), o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&agents, "agents", "", "agents' API addresses, comma-separated (default: start three)")
	f.StringVar(&endpoints, "endpoints", "", "the same agents' etcd client URLs, comma-separated, for the plain way")
	f.IntVar(&o.Participants, "participants", 5, "participants per round")
	f.IntVar(&o.Samples, "samples", 20, "rounds per side")
	return cmd
}
