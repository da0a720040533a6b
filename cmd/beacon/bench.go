package main

import (
	"os/signal"
	"syscall"
	"time"

	"github.com/beaconhq/beacon/bench"
	"github.com/spf13/cobra"
)

// benchCommands are added by the recipes' files from init.
var benchCommands []func() *cobra.Command

func newBenchCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Benchmarks, each beside the plain way in the same run, with the ratio",
	}
	cmd.PersistentFlags().BoolVar(&bench.CompareTLS, "tls", false,
		"dns, lock: also run the workload against agents with TLS on every hop, and print both and the ratio")
	cmd.AddCommand(newBenchAgentCmd(), newBenchDNSCmd(), newBenchRegisterCmd(), newBenchWatchCmd(),
		newPlainMemberCmd(), newPlainProxyCmd(), newPlainDNSCmd())
	for _, mk := range benchCommands {
		cmd.AddCommand(mk())
	}
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

func newBenchDNSCmd() *cobra.Command {
	o := bench.DNSOptions{}
	var inProcess bool
	var instances, rounds int
	cmd := &cobra.Command{
		Use:   "dns",
		Short: "DNS queries/s and latency of the agent, beside a fixed-answer miekg/dns server",
		Long: `DNS queries/s and p50/p99 latency over UDP, from several client sockets,
against the agent and, in the same run, a minimal miekg/dns server returning
the agent's answer fixed (in a process of its own, as the agent is).

Without --addr it starts its own agent with three instances of "web"; with
--instances N it then loads N more (over 1000 services) and reports p99
against the empty case and the agent's memory: a second pair of agents
holds the instances, and the empty and the loaded agents take turns under
the same load (--rounds times, 5s a run unless --duration says otherwise),
so that what else the machine does falls on both alike; the medians are
compared. --rate R paces the load at R queries/s (for p99 at a given rate)
instead of as fast as possible.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.PlainProcess = !inProcess
			if instances < 0 || o.Rate < 0 {
				return &usageError{errorf("--instances and --rate must not be negative")}
			}
			if instances > 0 && !cmd.Flags().Changed("duration") {
				o.Duration = 5 * time.Second
			}
			if rounds < 1 {
				return &usageError{errorf("--rounds must be at least 1")}
			}
			if bench.CompareTLS {
				if o.Addr != "" || instances > 0 {
					return &usageError{errorf("--tls starts its own agents: give neither --addr nor --instances")}
				}
				if !cmd.Flags().Changed("duration") {
					o.Duration = 3 * time.Second
				}
			}
			if o.Addr == "" {
				return bench.DNSAgent(cmd.Context(), cmd.OutOrStdout(), o, instances, rounds)
			}
			if o.Name == "" || instances > 0 {
				return &usageError{errorf("with --addr, give --name (a name the server answers) and no --instances")}
			}
			return bench.DNS(cmd.Context(), cmd.OutOrStdout(), o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Addr, "addr", "", "DNS server to load (default: start an agent)")
	f.StringVar(&o.Name, "name", "", "name to ask, with --addr")
	f.StringVar(&o.Type, "type", "SRV", "record type to ask")
	f.DurationVar(&o.Duration, "duration", 10*time.Second, "load per server (per run, 5s, with --instances)")
	f.IntVar(&o.Rate, "rate", 0, "queries/s in all (0: as fast as possible)")
	f.IntVar(&o.Sockets, "sockets", 8, "client UDP sockets")
	f.IntVar(&o.Concurrency, "concurrency", 4, "queries outstanding per socket")
	f.IntVar(&instances, "instances", 0, "then load this many instances into a second pair of agents and compare")
	f.IntVar(&rounds, "rounds", 5, "with --instances: turns of the empty and the loaded agents")
	f.BoolVar(&inProcess, "plain-in-process", false, "run the plain server inside the loader's process")
	return cmd
}

func newPlainDNSCmd() *cobra.Command {
	var from, name, qtype string
	cmd := &cobra.Command{
		Use:    "plain-dns",
		Short:  "Serve one DNS answer fixed (for bench dns)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGTERM, syscall.SIGINT)
			defer stop()
			return bench.PlainDNS(ctx, cmd.OutOrStdout(), from, name, qtype)
		},
	}
	cmd.Flags().StringVar(&from, "from", "", "server whose answer to copy")
	cmd.Flags().StringVar(&name, "name", "", "name")
	cmd.Flags().StringVar(&qtype, "type", "SRV", "type")
	return cmd
}
