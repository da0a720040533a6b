package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/beaconhq/beacon/api/beaconpb"
	"github.com/beaconhq/beacon/bench"
	"github.com/beaconhq/beacon/client"
	"github.com/spf13/cobra"
)

func init() {
	benchCommands = append(benchCommands, newBenchGateCmd)
}

func newQueueGateCmd(g *globals) *cobra.Command {
	var count uint32
	var after, key string
	var open, closeIt bool
	cmd := &cobra.Command{
		Use:   "gate QUEUE [--count N | --after ID | --key K[=V] | --open | --close]",
		Short: "Set a queue's gate (reserves wait while it is closed), or print it",
		Long: `Give QUEUE a gate, replacing any it had. While the gate is closed, reserve
hands out nothing (it waits, or finds nothing with --wait 0); pushes still
queue. The gate opens, once, when its condition holds:

  --count N     N messages are ready (messages pushed with --last not counted)
  --after ID    message ID is acked; until then ID alone is handed out
  --key K[=V]   config key K exists (holds V, with =V; the first '=' splits)
  --open        now, by hand (keeping the condition)
  --close       closes it by hand: only --open opens it again

Without a condition, print the gate (-w json for scripts).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := newPrinter(cmd.OutOrStdout(), g.output)
			if err != nil {
				return err
			}
			req := &beaconpb.QueueGateRequest{Queue: args[0]}
			given := 0
			f := cmd.Flags()
			if f.Changed("count") {
				given++
				req.Condition = &beaconpb.QueueGateRequest_Count{Count: count}
			}
			if f.Changed("after") {
				given++
				req.Condition = &beaconpb.QueueGateRequest_After{After: after}
			}
			if f.Changed("key") {
				given++
				k, v, hasValue := strings.Cut(key, "=")
				gk := &beaconpb.QueueGateKey{Key: k}
				if hasValue {
					gk.Value = []byte(v)
				}
				req.Condition = &beaconpb.QueueGateRequest_Key{Key: gk}
			}
			if open {
				given++
				req.Condition = &beaconpb.QueueGateRequest_Open{Open: true}
			}
			if closeIt {
				given++
				req.Condition = &beaconpb.QueueGateRequest_Close{Close: true}
			}
			if given > 1 {
				return &usageError{errorf("give one of --count, --after, --key, --open, --close")}
			}
			if f.Changed("count") && count == 0 {
				return &usageError{errorf("--count 0: give at least 1 (the ready messages that open the gate)")}
			}
			return queueCall(cmd, g, g.callTimeout, func(ctx context.Context, q beaconpb.QueueClient, _ *client.Client) error {
				gate, err := q.Gate(ctx, req)
				if err != nil {
					return err
				}
				if p.IsJSON() {
					return p.JSON(gate)
				}
				state, cond, rev := gateText(gate)
				return p.Table([]string{"QUEUE", "GATE", "CONDITION", "REVISION"}, [][]string{{gate.Queue, state, cond, rev}})
			})
		},
	}
	f := cmd.Flags()
	f.Uint32Var(&count, "count", 0, "open once this many messages are ready (--last ones not counted)")
	f.StringVar(&after, "after", "", "open once this message is acked; until then it alone is handed out")
	f.StringVar(&key, "key", "", "open once this config key exists, or holds V with K=V")
	f.BoolVar(&open, "open", false, "open the gate now")
	f.BoolVar(&closeIt, "close", false, "close the gate now; only --open opens it again")
	return cmd
}

// gateText is a gate for tables: its state, its condition, its revision.
func gateText(g *beaconpb.QueueGate) (state, cond, rev string) {
	if !g.Exists {
		return "none", "", ""
	}
	state = "closed"
	if g.Open {
		state = "open"
	}
	switch {
	case g.Count > 0:
		cond = fmt.Sprintf("count %d", g.Count)
	case g.After != "":
		cond = "after " + g.After
	case g.Key != nil && g.Key.Value != nil:
		cond = fmt.Sprintf("key %s=%s", g.Key.Key, quoteIfOdd(string(g.Key.Value)))
	case g.Key != nil:
		cond = "key " + g.Key.Key
	default:
		cond = "by hand"
	}
	return state, cond, strconv.FormatInt(g.Revision, 10)
}

// quoteIfOdd quotes a value that would not read back as itself.
func quoteIfOdd(s string) string {
	if s == "" || strings.TrimSpace(s) != s || strconv.Quote(s) != `"`+s+`"` {
		return strconv.Quote(s)
	}
	return s
}

func newBenchGateCmd() *cobra.Command {
	o := bench.GateOptions{}
	cmd := &cobra.Command{
		Use:   "gate",
		Short: "Gated queue (--key): from flipping a config key to a worker's reserve on another agent, beside workers watching the key with clientv3",
		Long: `Scenario (c) of a gated queue: a queue behind "gate --key K=go", workers
waiting in Reserve on another agent; the time from the put that flips K to
the first reserve that succeeds. Beside it, in the same run, the plain way:
workers watching K with clientv3 themselves and then taking the first key
of a prefix with a Get and a delete transaction. Without --agent it starts
its own pair of agents (a member, where the key is written, and a proxy,
where the workers wait).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.Samples < 1 || o.Samples > 10000 || o.Workers < 1 || o.Workers > 100 {
				return &usageError{errorf("--samples must be from 1 to 10000, --workers from 1 to 100")}
			}
			o.Agent, _ = cmd.Flags().GetString("agent")
			if o.Agent != "" && o.Endpoint == "" {
				return &usageError{errorf("with --agent, give --endpoint (that agent's etcd client URL) too")}
			}
			return bench.Gate(cmd.Context(), cmd.OutOrStdout(), o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.AgentB, "agent-b", "", "the workers' agent (default --agent)")
	f.StringVar(&o.Endpoint, "endpoint", "", "etcd client URL of --agent: where the key is flipped")
	f.StringVar(&o.EndpointB, "endpoint-b", "", "etcd client URL of the plain workers (default --endpoint)")
	f.IntVar(&o.Samples, "samples", 20, "flips per side")
	f.IntVar(&o.Workers, "workers", 3, "workers waiting per flip, each side")
	return cmd
}
