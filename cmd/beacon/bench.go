package main

import (
	"time"

	"github.com/beaconhq/beacon/bench"
	"github.com/spf13/cobra"
)

func newBenchCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Benchmarks, each beside the plain way in the same run, with the ratio",
	}
	cmd.AddCommand(newBenchAgentCmd(), newBenchRegisterCmd(), newBenchWatchCmd(), newPlainMemberCmd(), newPlainProxyCmd())
	return cmd
}

func newBenchAgentCmd() *cobra.Command {
	o := bench.FootprintOptions{}
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Footprint: start-to-ready and idle memory of a member and a proxy, beside bare etcd",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.Runs < 1 {
				return &usageError{errorf("--runs must be at least 1")}
			}
			return bench.Footprint(cmd.Context(), cmd.OutOrStdout(), o)
		},
	}
	cmd.Flags().IntVar(&o.Runs, "runs", 5, "starts measured per kind of process")
	cmd.Flags().DurationVar(&o.Idle, "idle", 3*time.Second, "idle time before resident memory is read")
	return cmd
}

// The plain-* commands are the comparison processes of `bench agent`.
func newPlainMemberCmd() *cobra.Command {
	var dataDir, clientURL, peerURL string
	cmd := &cobra.Command{
		Use:    "plain-member",
		Short:  "Run a bare embedded etcd member (for bench agent)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			return bench.PlainMember(dataDir, clientURL, peerURL)
		},
	}
	cmd.Flags().StringVar(&dataDir, "data-dir", "", "data dir")
	cmd.Flags().StringVar(&clientURL, "client-url", "", "client URL")
	cmd.Flags().StringVar(&peerURL, "peer-url", "", "peer URL")
	return cmd
}

func newPlainProxyCmd() *cobra.Command {
	var join, clientURL string
	cmd := &cobra.Command{
		Use:    "plain-proxy",
		Short:  "Run etcd's grpc-proxy alone (for bench agent)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			return bench.PlainProxy(join, clientURL)
		},
	}
	cmd.Flags().StringVar(&join, "join", "", "member client URL")
	cmd.Flags().StringVar(&clientURL, "client-url", "", "client URL to serve on")
	return cmd
}

func newBenchRegisterCmd() *cobra.Command {
	o := bench.RegisterOptions{}
	cmd := &cobra.Command{
		Use:   "register",
		Short: "Registrations/s through the agent, beside raw clientv3 lease + put",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.Count < 100 || o.Concurrency < 1 {
				return &usageError{errorf("--count must be at least 100 and --concurrency at least 1")}
			}
			o.Agent, _ = cmd.Flags().GetString("agent")
			return bench.Register(cmd.Context(), cmd.OutOrStdout(), o)
		},
	}
	cmd.Flags().StringVar(&o.Endpoint, "endpoint", "http://127.0.0.1:2379", "the agent's etcd client URL, for the plain way")
	cmd.Flags().IntVar(&o.Count, "count", 5000, "registrations per side")
	cmd.Flags().IntVar(&o.Concurrency, "concurrency", 16, "concurrent registrations")
	return cmd
}

func newBenchWatchCmd() *cobra.Command {
	o := bench.WatchOptions{}
	cmd := &cobra.Command{
		Use:   "watch",
		Short: "Time from a registration on agent A to agent B's DNS answering it, beside a raw put/watch",
		Long: `Time from a registration on agent A to agent B's DNS answering it, beside a
raw clientv3 put through A seen by a clientv3 watch through B. Without
--agent it starts its own pair of agents (a member and a proxy).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.Samples < 10 {
				return &usageError{errorf("--samples must be at least 10")}
			}
			o.Agent, _ = cmd.Flags().GetString("agent")
			if o.Agent != "" && (o.DNS == "" || o.EndpointA == "" || o.EndpointB == "") {
				return &usageError{errorf("with --agent, give --dns, --endpoint-a and --endpoint-b too")}
			}
			return bench.Watch(cmd.Context(), cmd.OutOrStdout(), o)
		},
	}
	cmd.Flags().StringVar(&o.DNS, "dns", "", "agent B's DNS address")
	cmd.Flags().StringVar(&o.EndpointA, "endpoint-a", "", "agent A's etcd client URL")
	cmd.Flags().StringVar(&o.EndpointB, "endpoint-b", "", "agent B's etcd client URL")
	cmd.Flags().StringVar(&o.Domain, "domain", "beacon.", "DNS zone")
	cmd.Flags().IntVar(&o.Samples, "samples", 200, "registrations timed per side")
	return cmd
}
