package main

import (
	"github.com/beaconhq/beacon/bench"
	"github.com/spf13/cobra"
)

func init() {
	benchCommands = append(benchCommands, newBenchProgressCmd)
}

func newBenchProgressCmd() *cobra.Command {
	o := bench.ProgressOptions{}
	cmd := &cobra.Command{
		Use:   "progress",
		Short: "Report-to-visible latency of queue progress reports, beside a raw clientv3 put under a lease + get",
		Long: `How long a queue worker's progress report takes until "queue stats
--in-flight" shows it: Queue.Progress on a reservation held in a session,
then Queue.Stats (and the same through the relay "beacon progress" uses),
beside the plain way on the same member: a clientv3 Put under a lease, then
a Get. Without --agent it starts its own agent.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.Samples < 10 || o.Samples > 100000 {
				return &usageError{errorf("--samples must be from 10 to 100000")}
			}
			o.Agent, _ = cmd.Flags().GetString("agent")
			if o.Agent != "" && o.Endpoint == "" {
				return &usageError{errorf("with --agent, give --endpoint (the agent's etcd client URL) too")}
			}
			return bench.Progress(cmd.Context(), cmd.OutOrStdout(), o)
		},
	}
	cmd.Flags().StringVar(&o.Endpoint, "endpoint", "", "the agent's etcd client URL, for the plain way")
	cmd.Flags().IntVar(&o.Samples, "samples", 200, "reports timed per side")
	return cmd
}
