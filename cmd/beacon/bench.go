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
	cmd.AddCommand(newBenchAgentCmd(), newPlainMemberCmd(), newPlainProxyCmd())
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
