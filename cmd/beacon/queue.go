package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/beaconhq/beacon/api/beaconpb"
	"github.com/beaconhq/beacon/bench"
	"github.com/beaconhq/beacon/client"
	"github.com/beaconhq/beacon/internal/cliout"
	"github.com/beaconhq/beacon/internal/progressrelay"
	"github.com/spf13/cobra"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
)

func init() {
	extraCommands = append(extraCommands, newQueueCmd)
	benchCommands = append(benchCommands, newBenchQueueCmd)
}

func newQueueCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "queue",
		Short: "Durable FIFO queues: push, reserve, ack, nack, extend, stats, dead, redrive, purge-dead, wait, gate",
		Long: `Durable named FIFO queues with at-least-once delivery. A reserved message
stays reserved until it is acked, nacked, its visibility timeout passes, or
(for a worker, "reserve QUEUE -- CMD") the reserving process dies; then it
is ready again at its place in line.`,
	}
	cmd.AddCommand(newQueuePushCmd(g), newQueueReserveCmd(g), newQueueAckCmd(g), newQueueNackCmd(g),
		newQueueExtendCmd(g), newQueueStatsCmd(g), newQueueDeadCmd(g), newQueueHandleDeadCmd(g, "redrive"),
		newQueueHandleDeadCmd(g, "purge-dead"), newQueueWaitCmd(g), newQueueGateCmd(g))
	return cmd
}

// queueCall runs fn with a client of the agent and a context bounded by
// timeout (none when 0), for calls that may block longer than
// --call-timeout.
func queueCall(cmd *cobra.Command, g *globals, timeout time.Duration, fn func(context.Context, beaconpb.QueueClient, *client.Client) error) error {
	c, err := client.New(g.agent)
	if err != nil {
		return err
	}
	defer c.Close()
	ctx, cancel := context.WithCancel(cmd.Context())
	if timeout > 0 {
		ctx, cancel = context.WithTimeout(cmd.Context(), timeout)
	}
	defer cancel()
	return fn(ctx, beaconpb.NewQueueClient(c.Conn()), c)
}

// queueDuration sends a duration flag only when it was given, so that the
// agent applies its default otherwise and refuses a bad value by name.
func queueDuration(cmd *cobra.Command, name string, d time.Duration) *durationpb.Duration {
	if !cmd.Flags().Changed(name) {
		return nil
	}
	return durationpb.New(d)
}

func newQueuePushCmd(g *globals) *cobra.Command {
	var dedup string
	var window, delay time.Duration
	var empty, last bool
	cmd := &cobra.Command{
		Use:   "push QUEUE [--last] [DATA] [--empty]",
		Short: "Append a message (DATA, or stdin when DATA is not given); prints its id",
		Args:  cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := newPrinter(cmd.OutOrStdout(), g.output)
			if err != nil {
				return err
			}
			var data []byte
			if len(args) == 2 {
				data = []byte(args[1])
			} else if data, _, err = cliout.ReadInput(cmd.InOrStdin(), 64<<20); err != nil {
				return errorf("reading the message from stdin: %v", err)
			}
			if len(data) == 0 && !empty {
				return &usageError{errorf("queue push %s: the message is empty (no DATA, and nothing on stdin); to push an empty message, give --empty", args[0])}
			}
			if len(data) > 0 && empty {
				return &usageError{errorf("queue push %s: --empty with a message of %d bytes", args[0], len(data))}
			}
			return queueCall(cmd, g, g.callTimeout, func(ctx context.Context, q beaconpb.QueueClient, _ *client.Client) error {
				resp, err := q.Enqueue(ctx, &beaconpb.QueueEnqueueRequest{Queue: args[0], Payload: data, DedupId: dedup,
					DedupWindow: queueDuration(cmd, "dedup-window", window), Delay: queueDuration(cmd, "delay", delay), Last: last})
				if err != nil {
					return err
				}
				if p.IsJSON() {
					return p.JSON(resp)
				}
				if resp.Duplicate {
					fmt.Fprintf(p.W, "%s (duplicate of dedup id %q; nothing added)\n", resp.Id, dedup)
					return nil
				}
				fmt.Fprintln(p.W, resp.Id)
				return nil
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&dedup, "dedup", "", "dedup id: a second push with it within the window adds nothing")
	f.DurationVar(&window, "dedup-window", 5*time.Minute, "how long a dedup id is remembered (1s to 24h)")
	f.DurationVar(&delay, "delay", 0, "make the message ready only after this delay (up to 24h)")
	f.BoolVar(&empty, "empty", false, "push an empty message (refused without it, so that an empty stdin is not taken for one)")
	f.BoolVar(&last, "last", false, "hand it out only after every other message of the queue is acked")
	return cmd
}

type queueReserveFlags struct {
	holdFlags
	visibility, wait, nackDelay time.Duration
	maxDeliveries               uint32
	count                       int
}

func newQueueReserveCmd(g *globals) *cobra.Command {
	o := &queueReserveFlags{}
	cmd := &cobra.Command{
		Use:   "reserve QUEUE [-- CMD ARGS...]",
		Short: "Reserve the oldest ready message: print it, or run CMD on it (worker form)",
		Long: `Reserve the oldest ready message of QUEUE.

Without CMD, print the message and its receipt (-w json for scripts). The
reservation is not tied to this process: it lasts until the visibility
timeout passes (default 30s), or until "beacon queue ack|nack RECEIPT";
"beacon queue extend RECEIPT" pushes the deadline back. The receipt holds
128 random bits made for this reservation: it alone proves the holder, so
keep it as secret as a password.

With "-- CMD ARGS...", the worker form: beacon opens a session, reserves a
message under it and runs CMD with the payload on its stdin and
BEACON_QUEUE, BEACON_QUEUE_MESSAGE_ID, BEACON_QUEUE_DELIVERIES and
BEACON_QUEUE_RECEIPT in its environment, extending the reservation while CMD
runs. CMD (or anything it starts) reports how far it has got with "beacon
progress PERCENT [MESSAGE]", through a socket named in BEACON_PROGRESS;
"beacon queue stats QUEUE --in-flight" shows it. CMD exiting 0 acks the
message, anything else nacks it. The
reservation has a deadline on beacon's own clock (the earlier of its
session lease's, as for beacon lock, and its visibility's): CMD gets SIGTERM
--grace before it and SIGKILL at it, so CMD has stopped before the message
can be delivered to another worker. If beacon is
killed (even with kill -9) CMD is killed too, the session ends, and the
message is ready again at once. With --count N it handles N messages
(0: until a reserve finds nothing within --wait). The exit status is CMD's
(in a loop, that of the last CMD that failed, or 0).

` + holdSignalsHelp,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dash := cmd.ArgsLenAtDash()
			if dash == -1 && len(args) > 1 || dash > 1 {
				return &usageError{errorf("reserve takes one QUEUE, then optionally -- CMD ARGS...")}
			}
			if dash == 1 {
				if len(args) < 2 {
					return &usageError{errorf("no CMD after --")}
				}
				if o.count < 0 {
					return &usageError{errorf("--count must not be negative")}
				}
				if err := o.check(cmd); err != nil {
					return err
				}
				if cmd.Flags().Changed("grace") && o.grace >= o.visibility {
					return &usageError{errorf("--grace %s must be smaller than --visibility %s", o.grace, o.visibility)}
				} else if !cmd.Flags().Changed("grace") {
					o.grace = min(o.grace, o.visibility/4)
				}
				return queueWork(cmd, g, o, args[0], args[1:])
			}
			return queueReservePrint(cmd, g, o, args[0])
		},
	}
	f := cmd.Flags()
	f.DurationVar(&o.visibility, "visibility", 30*time.Second, "how long the message stays reserved without ack, nack or extend")
	f.DurationVar(&o.wait, "wait", 0, "wait up to this long for a message (up to 24h); 0: answer at once")
	f.Uint32Var(&o.maxDeliveries, "max-deliveries", 5, "a message delivered this many times goes to the dead letters instead")
	f.IntVar(&o.count, "count", 1, "worker form: messages to handle (0: until none arrives within --wait)")
	o.add(cmd, "worker form: the reservation")
	f.DurationVar(&o.nackDelay, "nack-delay", 0, "worker form: when CMD fails, the message is ready again after this delay")
	return cmd
}

func (o *queueReserveFlags) request(cmd *cobra.Command, queue, session string) *beaconpb.QueueReserveRequest {
	r := &beaconpb.QueueReserveRequest{Queue: queue, SessionId: session, Visibility: queueDuration(cmd, "visibility", o.visibility),
		Wait: durationpb.New(o.wait)}
	if cmd.Flags().Changed("max-deliveries") {
		r.MaxDeliveries = &o.maxDeliveries
	}
	return r
}

func queueReservePrint(cmd *cobra.Command, g *globals, o *queueReserveFlags, queue string) error {
	p, err := newPrinter(cmd.OutOrStdout(), g.output)
	if err != nil {
		return err
	}
	return queueCall(cmd, g, o.wait+g.callTimeout, func(ctx context.Context, q beaconpb.QueueClient, _ *client.Client) error {
		resp, err := q.Reserve(ctx, o.request(cmd, queue, ""))
		if err != nil {
			return err
		}
		if p.IsJSON() {
			return p.JSON(resp)
		}
		m := resp.Message
		if err := p.Table([]string{"ID", "DELIVERIES", "DEADLINE", "RECEIPT"}, [][]string{{m.Id, strconv.Itoa(int(m.Deliveries)),
			resp.Deadline.AsTime().Local().Format(time.RFC3339), resp.Receipt}}); err != nil {
			return err
		}
		fmt.Fprintln(p.W)
		_, err = p.W.Write(m.Payload)
		if len(m.Payload) > 0 && m.Payload[len(m.Payload)-1] != '\n' {
			fmt.Fprintln(p.W)
		}
		return err
	})
}

func newQueueAckCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "ack RECEIPT",
		Short: "Remove a reserved message for good",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return queueCall(cmd, g, g.callTimeout, func(ctx context.Context, q beaconpb.QueueClient, _ *client.Client) error {
				_, err := q.Ack(ctx, &beaconpb.QueueAckRequest{Receipt: args[0]})
				return err
			})
		},
	}
}

func newQueueNackCmd(g *globals) *cobra.Command {
	var delay time.Duration
	cmd := &cobra.Command{
		Use:   "nack RECEIPT",
		Short: "Put a reserved message back at its place in the queue",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return queueCall(cmd, g, g.callTimeout, func(ctx context.Context, q beaconpb.QueueClient, _ *client.Client) error {
				_, err := q.Nack(ctx, &beaconpb.QueueNackRequest{Receipt: args[0], Delay: queueDuration(cmd, "delay", delay)})
				return err
			})
		},
	}
	cmd.Flags().DurationVar(&delay, "delay", 0, "ready again only after this delay")
	return cmd
}

func newQueueExtendCmd(g *globals) *cobra.Command {
	var vis time.Duration
	cmd := &cobra.Command{
		Use:   "extend RECEIPT",
		Short: "Move a reservation's deadline to now + --visibility; prints the deadline",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return queueCall(cmd, g, g.callTimeout, func(ctx context.Context, q beaconpb.QueueClient, _ *client.Client) error {
				resp, err := q.Extend(ctx, &beaconpb.QueueExtendRequest{Receipt: args[0], Visibility: queueDuration(cmd, "visibility", vis)})
				if err == nil {
					fmt.Fprintln(cmd.OutOrStdout(), resp.Deadline.AsTime().Local().Format(time.RFC3339Nano))
				}
				return err
			})
		},
	}
	cmd.Flags().DurationVar(&vis, "visibility", 30*time.Second, "new visibility from now")
	return cmd
}

func newQueueStatsCmd(g *globals) *cobra.Command {
	var inFlight bool
	cmd := &cobra.Command{
		Use:   "stats QUEUE [--in-flight]",
		Short: "Count a queue's messages: depth, ready, in flight, delayed, dead, age of the oldest",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := newPrinter(cmd.OutOrStdout(), g.output)
			if err != nil {
				return err
			}
			return queueCall(cmd, g, g.callTimeout, func(ctx context.Context, q beaconpb.QueueClient, _ *client.Client) error {
				s, err := q.Stats(ctx, &beaconpb.QueueStatsRequest{Queue: args[0], InFlight: inFlight})
				if err != nil {
					return err
				}
				if p.IsJSON() {
					return p.JSON(s)
				}
				u := func(n uint64) string { return strconv.FormatUint(n, 10) }
				oldest := ""
				if s.Depth > 0 {
					oldest = s.OldestAge.AsDuration().Round(time.Millisecond).String()
				}
				head := []string{"QUEUE", "DEPTH", "READY", "IN FLIGHT", "DELAYED", "DEAD", "OLDEST"}
				row := []string{s.Queue, u(s.Depth), u(s.Ready), u(s.InFlight), u(s.Delayed), u(s.Dead), oldest}
				if s.Gate != nil {
					state, cond, _ := gateText(s.Gate)
					head, row = append(head, "GATE"), append(row, state+", "+cond)
				}
				err = p.Table(head, [][]string{row})
				if err == nil && inFlight {
					err = printInFlight(p, s)
				}
				return err
			})
		},
	}
	cmd.Flags().BoolVar(&inFlight, "in-flight", false, "also list the in-flight messages: worker (node, pid), progress, age, deliveries")
	return cmd
}

func newQueueDeadCmd(g *globals) *cobra.Command {
	var limit uint32
	cmd := &cobra.Command{
		Use:   "dead QUEUE",
		Short: "List the dead letters: messages that reached their maximum deliveries",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := newPrinter(cmd.OutOrStdout(), g.output)
			if err != nil {
				return err
			}
			return queueCall(cmd, g, g.callTimeout, func(ctx context.Context, q beaconpb.QueueClient, _ *client.Client) error {
				resp, err := q.DeadLetters(ctx, &beaconpb.QueueDeadLettersRequest{Queue: args[0], Limit: limit})
				if err != nil {
					return err
				}
				if p.IsJSON() {
					return p.JSON(resp)
				}
				var rows [][]string
				for _, m := range resp.Messages {
					payload := strconv.Quote(string(m.Payload))
					if len(payload) > 40 {
						payload = payload[:37] + "..."
					}
					rows = append(rows, []string{m.Id, strconv.Itoa(int(m.Deliveries)), m.DeadAt.AsTime().Local().Format(time.RFC3339), m.DeadReason, payload})
				}
				if err := p.Table([]string{"ID", "DELIVERIES", "DIED", "REASON", "PAYLOAD"}, rows); err != nil {
					return err
				}
				if resp.More {
					fmt.Fprintf(p.W, "(more than %d; raise --limit)\n", len(resp.Messages))
				}
				return nil
			})
		},
	}
	cmd.Flags().Uint32Var(&limit, "limit", 100, "at most this many, oldest first (up to 1000)")
	return cmd
}

// newQueueHandleDeadCmd is "redrive" (dead letters back to the queue) or
// "purge-dead" (deleted).
func newQueueHandleDeadCmd(g *globals, name string) *cobra.Command {
	var all bool
	short, verb := "Send dead letters back to their queue, first in line, deliveries reset", "redriven"
	if name == "purge-dead" {
		short, verb = "Delete dead letters and their payloads", "purged"
	}
	cmd := &cobra.Command{
		Use:   name + " QUEUE (ID... | --all)",
		Short: short,
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := newPrinter(cmd.OutOrStdout(), g.output)
			if err != nil {
				return err
			}
			if all == (len(args) > 1) {
				return &usageError{errorf("give the dead letters' ids or --all, not both")}
			}
			for _, id := range args[1:] {
				if n, err := strconv.ParseUint(id, 10, 64); err != nil || n == 0 {
					return &usageError{errorf("%.40q is not a message id", id)}
				}
			}
			var total *beaconpb.QueueDeadResponse
			err = queueCall(cmd, g, 0, func(ctx context.Context, _ beaconpb.QueueClient, c *client.Client) error {
				var err error
				total, err = c.HandleDead(ctx, args[0], name == "purge-dead", args[1:], all, g.callTimeout)
				if err != nil && len(total.Done) > 0 {
					fmt.Fprintf(p.W, "%s %d before the error: %s\n", verb, len(total.Done), strings.Join(total.Done, " "))
				}
				return err
			})
			if err != nil {
				return err
			}
			if p.IsJSON() {
				err = p.JSON(total)
			} else {
				line := fmt.Sprintf("%s %d", verb, len(total.Done))
				if len(total.Done) > 0 {
					line += ": " + strings.Join(total.Done, " ")
				}
				_, err = fmt.Fprintln(p.W, line)
			}
			if err == nil && len(total.NotDead) > 0 {
				err = errorf("not dead letters of %s: %s", args[0], strings.Join(total.NotDead, " "))
			}
			return err
		},
	}
	cmd.Flags().BoolVar(&all, "all", false, "every dead letter of the queue")
	return cmd
}

func newQueueWaitCmd(g *globals) *cobra.Command {
	var count uint64
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "wait QUEUE --count N [--wait D]",
		Short: "Block until the queue holds at least N messages; prints how many it holds",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !cmd.Flags().Changed("count") {
				return &usageError{errorf("--count is required")}
			}
			if _, err := waitFlag(cmd); err != nil {
				return err
			}
			return queueCall(cmd, g, timeout, func(ctx context.Context, q beaconpb.QueueClient, _ *client.Client) error {
				resp, err := q.Wait(ctx, &beaconpb.QueueWaitRequest{Queue: args[0], Count: count})
				if status.Code(err) == codes.DeadlineExceeded && timeout > 0 {
					return errorf("queue %q did not reach %d messages within %s", args[0], count, timeout)
				}
				if err == nil {
					fmt.Fprintln(cmd.OutOrStdout(), resp.Count)
				}
				return err
			})
		},
	}
	cmd.Flags().Uint64Var(&count, "count", 0, "messages to wait for (at least 1)")
	bindWait(cmd, &timeout, "give up after this long (0: never)")
	return cmd
}

func newBenchQueueCmd() *cobra.Command {
	o := bench.QueueOptions{}
	cmd := &cobra.Command{
		Use:   "queue",
		Short: "Messages/s (enqueue + reserve + ack) through the agent, beside etcd's recipe queue",
		Long: `Messages per second, each enqueued, reserved and acked through the agent's
Queue service (reservations bound to consumer sessions), beside etcd's
recipe queue (client/v3/experimental/recipes: Enqueue, Dequeue) on the same
cluster in the same run. Without --agent it starts its own agent.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.Count < 10 || o.Producers < 1 || o.Consumers < 1 || o.PayloadSize < 0 || o.PayloadSize > 1<<20 {
				return &usageError{errorf("--count must be at least 10, --producers and --consumers at least 1, --payload 0 to 1 MiB")}
			}
			o.Agent, _ = cmd.Flags().GetString("agent")
			if o.Agent != "" && o.Endpoint == "" {
				return &usageError{errorf("with --agent, give --endpoint (its etcd client URL) too")}
			}
			return bench.Queue(cmd.Context(), cmd.OutOrStdout(), o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Endpoint, "endpoint", "", "the agent's etcd client URL, for the plain way (with --agent)")
	f.IntVar(&o.Count, "count", 2000, "messages per side and round")
	f.IntVar(&o.Producers, "producers", 8, "concurrent producers in the concurrent round")
	f.IntVar(&o.Consumers, "consumers", 8, "concurrent consumers in the concurrent round")
	f.IntVar(&o.PayloadSize, "payload", 128, "payload bytes")
	f.BoolVar(&o.SeparateAck, "separate-ack", false, "consumers call Ack per message instead of acking within the next Reserve")
	return cmd
}

// queueWork is the worker form: it exits with CMD's status once its
// session is closed.
func queueWork(cmd *cobra.Command, g *globals, o *queueReserveFlags, queue string, argv []string) error {
	code, err := queueWorkLoop(cmd, g, o, queue, argv)
	if err != nil {
		return err
	}
	if code != 0 {
		os.Exit(code)
	}
	return nil
}

func queueWorkLoop(cmd *cobra.Command, g *globals, o *queueReserveFlags, queue string, argv []string) (int, error) {
	// Signals from here on are CMD's, or end the wait for a message.
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, holdSignals...)
	defer signal.Stop(sigs)
	c, err := client.New(g.agent)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(cmd.Context(), g.callTimeout)
	sess, err := c.NewSession(ctx, o.sessionOptions("beacon queue reserve "+queue)...)
	cancel()
	if err != nil {
		return 0, fmt.Errorf("opening a session with the agent: %w", err)
	}
	// Closing the session ends any reservation still held at once.
	defer sess.Close()

	failed := 0
	for n := 0; o.count == 0 || n < o.count; n++ {
		type reserved struct {
			r   *client.Reservation
			err error
		}
		got := make(chan reserved, 1)
		ctx, cancel := context.WithTimeout(cmd.Context(), o.wait+g.callTimeout)
		go func() {
			r, err := c.Reserve(ctx, sess, o.request(cmd, queue, sess.ID))
			got <- reserved{r, err}
		}()
		// putBack gives back a message reserved just as the wait ended.
		putBack := func() {
			cancel()
			if r := <-got; r.err == nil {
				nctx, ncancel := context.WithTimeout(context.Background(), g.callTimeout)
				_ = r.r.Nack(nctx, 0)
				ncancel()
			}
		}
		var r reserved
	wait:
		for {
			select {
			case r = <-got:
				break wait
			case sig := <-sigs:
				if !endsWait(sig) {
					continue // no CMD to pass it to
				}
				putBack()
				return 128 + int(sig.(syscall.Signal)), nil
			case <-sess.Stopping():
				putBack()
				return 0, errors.New("the agent is stopping")
			}
		}
		cancel()
		if r.err != nil {
			if n > 0 && status.Code(r.err) == codes.NotFound {
				break // the queue stayed empty for --wait: done
			}
			return 0, r.err
		}
		code, stop, err := queueRun(cmd.Context(), g, o, r.r, argv, sigs)
		if err != nil {
			return 0, err
		}
		if code != 0 {
			failed = code
		}
		if stop {
			break
		}
	}
	return failed, nil
}

// queueRun runs CMD on one reserved message under its reservation (kept
// extended in the background), and acks or nacks it by CMD's status. stop
// reports a signal that was passed to CMD: the loop ends after it.
func queueRun(ctx context.Context, g *globals, o *queueReserveFlags, r *client.Reservation, argv []string, sigs <-chan os.Signal) (code int, stop bool, err error) {
	m := r.Message
	env := append(os.Environ(), "BEACON_QUEUE="+m.Queue, "BEACON_QUEUE_MESSAGE_ID="+m.Id,
		"BEACON_QUEUE_DELIVERIES="+strconv.Itoa(int(m.Deliveries)), "BEACON_QUEUE_RECEIPT="+r.Receipt)
	// The work goes on without progress reports rather than not at all.
	relay, err := progressRelay(r)
	if err != nil {
		fmt.Fprintf(os.Stderr, "beacon: message %s of queue %s: no progress reports: %s\n", m.Id, m.Queue, oneLine(err))
		env = append(env, progressrelay.Env+"=")
	} else {
		env = append(env, progressrelay.Env+"="+relay.Path())
	}
	res, err := runUnderHold(ctx, g, r.Hold, argv, env, &o.holdFlags, sigs, bytes.NewReader(m.Payload))
	if relay != nil {
		relay.Close() // before the ack or nack: no report comes after the end
	}
	cctx, cancel := context.WithTimeout(context.Background(), g.callTimeout)
	defer cancel()
	switch {
	case err != nil:
		_ = r.Nack(cctx, 0)
		return 0, true, fmt.Errorf("message %s of queue %s: %w", m.Id, m.Queue, err)
	case res.Lost != nil && res.Signal == nil:
		// CMD is dead; the message goes back (if it is still ours) and will
		// be delivered again.
		_ = r.Nack(cctx, 0)
		return res.Code, true, fmt.Errorf("message %s of queue %s: the reservation was lost while %s ran, so it was stopped: %s; it will be delivered again",
			m.Id, m.Queue, argv[0], oneLine(res.Lost))
	case res.Code == 0:
		err = r.Ack(cctx)
	default:
		err = r.Nack(cctx, o.nackDelay)
	}
	if err != nil {
		err = fmt.Errorf("message %s of queue %s: %w", m.Id, m.Queue, err)
	}
	return res.Code, res.Signal != nil, err
}
