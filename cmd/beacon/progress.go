package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/beaconhq/beacon/client"
	"github.com/beaconhq/beacon/internal/progressrelay"
	"github.com/beaconhq/beacon/queue"
	"github.com/spf13/cobra"
)

func init() {
	extraCommands = append(extraCommands, newProgressCmd)
}

func newProgressCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "progress PERCENT [MESSAGE]",
		Short: "From inside a queue worker's CMD: report how far it has got with its message",
		Long: `Report how far a queue worker has got with its message: PERCENT, a whole
number from 0 to 100 ("50" or "50%"), and optionally a MESSAGE of at most
1024 bytes. It works only inside the CMD of "beacon queue reserve QUEUE --
CMD" (or a process CMD started): that beacon names a socket of its own in
` + progressrelay.Env + `, and sends the report on to the agent under the
reservation. "beacon queue stats QUEUE --in-flight" shows it, with the
worker's node and pid; it goes when the message is acked or nacked, or
when the worker dies. It returns once the agent has stored the report
(or a newer one that replaced it: reports coming faster than 20 a second
are coalesced, the latest wins).`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			percent, err := parsePercent(args[0])
			if err != nil {
				return err
			}
			message := ""
			if len(args) == 2 {
				message = args[1]
			}
			if err := queue.ValidateProgress(percent, message); err != nil {
				return &usageError{fmt.Errorf("progress: %w", err)}
			}
			path := os.Getenv(progressrelay.Env)
			if path == "" {
				return &usageError{errorf("progress: not inside a queue worker (%s is not set): run it from the CMD of `beacon queue reserve QUEUE -- CMD`", progressrelay.Env)}
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), g.callTimeout)
			defer cancel()
			if err := progressrelay.Report(ctx, path, percent, message); err != nil {
				return fmt.Errorf("progress: %w", err)
			}
			return nil
		},
	}
}

// parsePercent reads PERCENT: a whole number from 0 to 100, with or
// without a trailing "%".
func parsePercent(s string) (int, error) {
	n, err := strconv.Atoi(strings.TrimSuffix(s, "%"))
	if err != nil || n < 0 || n > 100 {
		return 0, &usageError{errorf("progress: PERCENT %.20q is not a whole number from 0 to 100", s)}
	}
	return n, nil
}

// progressRelay listens for CMD's progress reports on r's message and
// forwards them to the agent; the caller adds progressrelay.Env=Path() to
// CMD's environment and closes it when CMD has ended.
func progressRelay(r *client.Reservation) (*progressrelay.Relay, error) {
	return progressrelay.Start(func(ctx context.Context, percent int, message string) error {
		if err := r.Progress(ctx, percent, message); err != nil {
			return errors.New(oneLine(err))
		}
		return nil
	})
}
