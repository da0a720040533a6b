package main

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/beaconhq/beacon/api/beaconpb"
	"github.com/beaconhq/beacon/client"
	"github.com/beaconhq/beacon/internal/cliout"
	"github.com/beaconhq/beacon/registry"
	"github.com/spf13/cobra"
)

func newRegisterCmd(g *globals) *cobra.Command {
	in := &beaconpb.Instance{}
	check := &beaconpb.Check{}
	var tags, meta []string
	var port, weight, priority int
	var ttl, interval, timeout, deregisterAfter time.Duration
	cmd := &cobra.Command{
		Use:   "register --name SERVICE --port PORT [flags]",
		Short: "Register a service instance on this agent (kept until `beacon deregister`)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			p, err := newPrinter(cmd.OutOrStdout(), g.output)
			if err != nil {
				return err
			}
			// The agent checks these too, with the same functions.
			if err := registry.ValidPort(port); err != nil {
				return &usageError{err}
			}
			if err := registry.ValidSRV(weight, priority); err != nil {
				return &usageError{err}
			}
			in.Port, in.Weight, in.Priority = uint32(port), uint32(weight), uint32(priority)
			// A duration flag given is sent, even 0; one not given is
			// absent (the agent's default).
			check.Ttl = queueDuration(cmd, "ttl", ttl)
			check.Interval = queueDuration(cmd, "interval", interval)
			check.Timeout = queueDuration(cmd, "timeout", timeout)
			check.DeregisterCriticalAfter = queueDuration(cmd, "deregister-critical-after", deregisterAfter)
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
				if p.IsJSON() {
					return p.JSON(resp)
				}
				fmt.Fprintf(p.W, "registered %s (service %s, %s:%d, %s)\n",
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
	f.DurationVar(&ttl, "ttl", 0, "TTL check: report with 'beacon check pass|warn|fail ID' within this `duration`")
	f.DurationVar(&interval, "interval", 0, "check interval (default 10s)")
	f.DurationVar(&timeout, "timeout", 0, "check timeout (default 5s)")
	f.Int32Var(&check.SuccessBeforePassing, "success-before-passing", 0, "consecutive successes before passing")
	f.Int32Var(&check.FailuresBeforeCritical, "failures-before-critical", 0, "consecutive failures before critical")
	f.DurationVar(&deregisterAfter, "deregister-critical-after", 0, "deregister after being critical this long")
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
			p, err := newPrinter(cmd.OutOrStdout(), g.output)
			if err != nil {
				return err
			}
			return withAgent(cmd, g, func(ctx context.Context, c *client.Client) error {
				if err := c.Deregister(ctx, service, args[0]); err != nil {
					return err
				}
				if p.IsJSON() {
					return p.JSON(cliout.Object{}.With("id", args[0]).With("service", service).With("deregistered", true))
				}
				fmt.Fprintf(p.W, "deregistered %s\n", args[0])
				return nil
			})
		},
	}
	cmd.Flags().StringVar(&service, "service", "", "the instance's service, when the id is registered under several")
	return cmd
}

func newCheckCmd(g *globals) *cobra.Command {
	var service, note string
	cmd := &cobra.Command{
		Use:       "check pass|warn|fail ID [--note TEXT]",
		Short:     "Report the status of an agent-owned or config file instance's TTL check",
		Args:      cobra.ExactArgs(2),
		ValidArgs: []string{"pass", "warn", "fail"},
		RunE: func(cmd *cobra.Command, args []string) error {
			switch args[0] {
			case "pass", "warn", "fail":
			default:
				return &usageError{fmt.Errorf("check %q: want pass, warn or fail", args[0])}
			}
			p, err := newPrinter(cmd.OutOrStdout(), g.output)
			if err != nil {
				// --output was check's note before it was the global -w.
				return &usageError{fmt.Errorf("%v; the note stored with the status is --note TEXT", err)}
			}
			return withAgent(cmd, g, func(ctx context.Context, c *client.Client) error {
				_, err := c.Registry.Heartbeat(ctx, &beaconpb.HeartbeatRequest{Service: service, Id: args[1], Status: args[0], Output: note})
				if err != nil || !p.IsJSON() {
					return err
				}
				return p.JSON(cliout.Object{}.With("id", args[1]).With("service", service).With("status", args[0]).With("note", note))
			})
		},
	}
	cmd.Flags().StringVar(&service, "service", "", "the instance's service, when the id is registered under several")
	cmd.Flags().StringVar(&note, "note", "", "a note stored with the status (shown as OUTPUT by beacon services NAME)")
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
				if req.Service == "" {
					return printServices(p, instances, rev)
				}
				resp := &beaconpb.ListResponse{Instances: instances, Revision: rev}
				if p.IsJSON() {
					return p.JSON(resp)
				}
				var rows [][]string
				for _, in := range resp.Instances {
					rows = append(rows, []string{in.Id, in.Node, fmt.Sprintf("%s:%d", in.Address, in.Port), in.Status,
						strings.Join(in.Tags, ","), fmt.Sprint(in.Weight), fmt.Sprint(in.Priority), in.Output})
				}
				return p.Table([]string{"ID", "NODE", "ADDRESS", "STATUS", "TAGS", "WEIGHT", "PRIORITY", "OUTPUT"}, rows)
			})
		},
	}
	cmd.Flags().StringArrayVar(&tags, "tag", nil, "only instances with this tag (repeatable)")
	cmd.Flags().BoolVar(&healthy, "healthy", false, "only passing instances")
	return cmd
}

// serviceSummary is one row of `beacon services` without a NAME.
type serviceSummary struct {
	name       string
	n, passing int
	tags       []string
}

// summarize folds instances into their services, by name.
func summarize(ins []*beaconpb.Instance) []serviceSummary {
	by := map[string]*serviceSummary{}
	tags := map[string]map[string]bool{}
	for _, in := range ins {
		s := by[in.Service]
		if s == nil {
			s = &serviceSummary{name: in.Service}
			by[in.Service], tags[in.Service] = s, map[string]bool{}
		}
		s.n++
		if in.Status == "passing" {
			s.passing++
		}
		for _, t := range in.Tags {
			if !tags[in.Service][t] {
				tags[in.Service][t] = true
				s.tags = append(s.tags, t)
			}
		}
	}
	out := make([]serviceSummary, 0, len(by))
	for _, s := range by {
		sort.Strings(s.tags)
		out = append(out, *s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}

// printServices prints the services of a listing: a row, or a JSON
// object, per service.
func printServices(p *printer, ins []*beaconpb.Instance, rev int64) error {
	sums := summarize(ins)
	if p.IsJSON() {
		list := make([]cliout.Object, 0, len(sums))
		for _, s := range sums {
			list = append(list, cliout.Object{}.With("service", s.name).With("instances", s.n).
				With("passing", s.passing).With("tags", append([]string{}, s.tags...)))
		}
		return p.JSON(cliout.Object{}.With("services", list).With("revision", rev))
	}
	var rows [][]string
	for _, s := range sums {
		rows = append(rows, []string{s.name, fmt.Sprint(s.n), fmt.Sprint(s.passing), strings.Join(s.tags, ",")})
	}
	return p.Table([]string{"SERVICE", "INSTANCES", "PASSING", "TAGS"}, rows)
}
