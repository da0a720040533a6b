package main

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/beaconhq/beacon/api/beaconpb"
	"github.com/beaconhq/beacon/client"
	"github.com/spf13/cobra"
)

func newRegisterCmd(g *globals) *cobra.Command {
	in := &beaconpb.Instance{}
	check := &beaconpb.Check{}
	var tags, meta []string
	var port, weight, priority int
	cmd := &cobra.Command{
		Use:   "register --name SERVICE --port PORT [flags]",
		Short: "Register a service instance on this agent (kept until `beacon deregister`)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if port < 0 || port > 65535 || weight < 0 || weight > 65535 || priority < 0 || priority > 65535 {
				return &usageError{fmt.Errorf("--port, --weight and --priority must be from 0 to 65535")}
			}
			in.Port, in.Weight, in.Priority = uint32(port), uint32(weight), uint32(priority)
			in.Tags = tags
			in.Meta = map[string]string{}
			for _, kv := range meta {
				k, v, ok := strings.Cut(kv, "=")
				if !ok {
					return &usageError{fmt.Errorf("--meta %q: want key=value", kv)}
				}
				in.Meta[k] = v
			}
			return withAgent(cmd, g, func(ctx context.Context, c *client.Client) error {
				resp, err := c.Registry.Register(ctx, &beaconpb.RegisterRequest{Instance: in, Check: check})
				if err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "registered %s (service %s, %s:%d, %s)\n",
					resp.Instance.Id, resp.Instance.Service, resp.Instance.Address, resp.Instance.Port, resp.Instance.Status)
				return nil
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&in.Service, "name", "", "service name (a DNS label)")
	f.StringVar(&in.Id, "id", "", "instance id (default <node>-<service>-<port>)")
	f.StringVar(&in.Address, "address", "", "instance IP (default the node's)")
	f.IntVar(&port, "port", 0, "instance port")
	f.StringArrayVar(&tags, "tag", nil, "tag (repeatable)")
	f.StringArrayVar(&meta, "meta", nil, "meta key=value (repeatable)")
	f.IntVar(&weight, "weight", 1, "SRV weight")
	f.IntVar(&priority, "priority", 0, "SRV priority (lower is preferred)")
	f.StringVar(&check.Http, "check-http", "", "HTTP check URL (2xx passing, 429 warning)")
	f.StringVar(&check.Tcp, "check-tcp", "", "TCP check host:port")
	f.StringVar(&check.Grpc, "check-grpc", "", "gRPC health check host:port[/service]")
	f.StringVar(&check.Ttl, "ttl", "", "TTL check: report with `beacon check pass|warn|fail ID` within this")
	f.StringVar(&check.Interval, "interval", "", "check interval (default 10s)")
	f.StringVar(&check.Timeout, "timeout", "", "check timeout (default 5s)")
	f.Int32Var(&check.SuccessBeforePassing, "success-before-passing", 0, "consecutive successes before passing")
	f.Int32Var(&check.FailuresBeforeCritical, "failures-before-critical", 0, "consecutive failures before critical")
	f.StringVar(&check.DeregisterCriticalAfter, "deregister-critical-after", "", "deregister after being critical this long")
	_ = cmd.MarkFlagRequired("name")
	_ = cmd.MarkFlagRequired("port")
	return cmd
}

func newDeregisterCmd(g *globals) *cobra.Command {
	var service string
	cmd := &cobra.Command{
		Use:   "deregister ID",
		Short: "Remove an agent-owned instance (one beacon register made) from this agent",
		Long: `Remove an instance registered on this agent without a session (by beacon
register, or the API without a session_id). An application's instance
belongs to its session and goes when the application ends; a config
file's instance goes when its services block is removed and the agent
reloads. Either is refused here (permission denied).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withAgent(cmd, g, func(ctx context.Context, c *client.Client) error {
				if err := c.Deregister(ctx, service, args[0]); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "deregistered %s\n", args[0])
				return nil
			})
		},
	}
	cmd.Flags().StringVar(&service, "service", "", "the instance's service, when the id is registered under several")
	return cmd
}

func newCheckCmd(g *globals) *cobra.Command {
	var service, output string
	cmd := &cobra.Command{
		Use:       "check pass|warn|fail ID",
		Short:     "Report the status of an agent-owned or config file instance's TTL check",
		Args:      cobra.ExactArgs(2),
		ValidArgs: []string{"pass", "warn", "fail"},
		RunE: func(cmd *cobra.Command, args []string) error {
			switch args[0] {
			case "pass", "warn", "fail":
			default:
				return &usageError{fmt.Errorf("check %q: want pass, warn or fail", args[0])}
			}
			return withAgent(cmd, g, func(ctx context.Context, c *client.Client) error {
				_, err := c.Registry.Heartbeat(ctx, &beaconpb.HeartbeatRequest{Service: service, Id: args[1], Status: args[0], Output: output})
				return err
			})
		},
	}
	cmd.Flags().StringVar(&service, "service", "", "the instance's service, when the id is registered under several")
	cmd.Flags().StringVar(&output, "output", "", "a note stored with the status")
	return cmd
}

func newServicesCmd(g *globals) *cobra.Command {
	var tags []string
	var healthy bool
	cmd := &cobra.Command{
		Use:   "services [NAME]",
		Short: "List services, or the instances of one",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := newPrinter(cmd.OutOrStdout(), g.output)
			if err != nil {
				return err
			}
			req := &beaconpb.ListRequest{Tags: tags, HealthyOnly: healthy}
			if len(args) == 1 {
				req.Service = args[0]
			}
			return withAgent(cmd, g, func(ctx context.Context, c *client.Client) error {
				instances, rev, err := c.List(ctx, req)
				if err != nil {
					return err
				}
				resp := &beaconpb.ListResponse{Instances: instances, Revision: rev}
				if p.format == "json" {
					return p.json(resp)
				}
				if req.Service == "" {
					return p.table([]string{"SERVICE", "INSTANCES", "PASSING", "TAGS"}, serviceSummary(resp.Instances))
				}
				var rows [][]string
				for _, in := range resp.Instances {
					rows = append(rows, []string{in.Id, in.Node, fmt.Sprintf("%s:%d", in.Address, in.Port), in.Status,
						strings.Join(in.Tags, ","), fmt.Sprint(in.Weight), fmt.Sprint(in.Priority), in.Output})
				}
				return p.table([]string{"ID", "NODE", "ADDRESS", "STATUS", "TAGS", "WEIGHT", "PRIORITY", "OUTPUT"}, rows)
			})
		},
	}
	cmd.Flags().StringArrayVar(&tags, "tag", nil, "only instances with this tag (repeatable)")
	cmd.Flags().BoolVar(&healthy, "healthy", false, "only passing instances")
	return cmd
}

func serviceSummary(ins []*beaconpb.Instance) [][]string {
	type sum struct {
		n, passing int
		tags       map[string]bool
	}
	by := map[string]*sum{}
	for _, in := range ins {
		s := by[in.Service]
		if s == nil {
			s = &sum{tags: map[string]bool{}}
			by[in.Service] = s
		}
		s.n++
		if in.Status == "passing" {
			s.passing++
		}
		for _, t := range in.Tags {
			s.tags[t] = true
		}
	}
	var rows [][]string
	for name, s := range by {
		var tags []string
		for t := range s.tags {
			tags = append(tags, t)
		}
		sort.Strings(tags)
		rows = append(rows, []string{name, fmt.Sprint(s.n), fmt.Sprint(s.passing), strings.Join(tags, ",")})
	}
	sort.Slice(rows, func(i, j int) bool { return rows[i][0] < rows[j][0] })
	return rows
}
