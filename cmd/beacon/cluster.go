package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/beaconhq/beacon/api/beaconpb"
	"github.com/beaconhq/beacon/client"
	"github.com/dustin/go-humanize"
	"github.com/spf13/cobra"
)

// withAgent runs fn with a client of the agent and a bounded context.
func withAgent(cmd *cobra.Command, g *globals, fn func(ctx context.Context, c *client.Client) error) error {
	c, err := client.New(g.agent)
	if err != nil {
		return err
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(cmd.Context(), g.callTimeout)
	defer cancel()
	return fn(ctx, c)
}

func newMembersCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "members",
		Short: "List the cluster's voters, learners, proxies and external agents",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			p, err := newPrinter(cmd.OutOrStdout(), g.output)
			if err != nil {
				return err
			}
			return withAgent(cmd, g, func(ctx context.Context, c *client.Client) error {
				resp, err := c.Cluster.Members(ctx, &beaconpb.MembersRequest{})
				if err != nil {
					return err
				}
				if p.IsJSON() {
					return p.JSON(resp)
				}
				var rows [][]string
				for _, m := range resp.Members {
					rows = append(rows, []string{m.Id, m.Name, m.Role, strings.Join(m.PeerUrls, ","), strings.Join(m.ClientUrls, ","), m.ApiAddr, m.Version})
				}
				return p.Table([]string{"ID", "NAME", "ROLE", "PEER URLS", "CLIENT URLS", "API", "VERSION"}, rows)
			})
		},
	}
}

func newStatusCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Show the cluster's health and each member's raft state (exit 3 without quorum)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			p, err := newPrinter(cmd.OutOrStdout(), g.output)
			if err != nil {
				return err
			}
			return withAgent(cmd, g, func(ctx context.Context, c *client.Client) error {
				resp, err := c.Cluster.Status(ctx, &beaconpb.StatusRequest{})
				if err != nil {
					return err
				}
				if err := printStatus(p, resp); err != nil {
					return err
				}
				if !resp.HasQuorum {
					leader := "no leader"
					if resp.Leader != "" {
						leader = "leader " + resp.Leader
					}
					return &exitError{code: exitNoQuorum, err: errorf("no quorum: %d of %d voters healthy, %s", resp.HealthyVoters, resp.Voters, leader)}
				}
				return nil
			})
		},
	}
}

// printStatus prints the report of beacon status.
func printStatus(p *printer, resp *beaconpb.StatusResponse) error {
	if p.IsJSON() {
		return p.JSON(resp)
	}
	quorum := "yes"
	if !resp.HasQuorum {
		quorum = "NO"
	}
	fmt.Fprintf(p.W, "cluster %s  leader %s  quorum %s (%d/%d voters healthy)  revision %d  answered by %s (%s)\n\n",
		resp.ClusterId, orDash(resp.Leader), quorum, resp.HealthyVoters, resp.Voters, resp.Revision, resp.Local, resp.LocalRole)
	var rows [][]string
	for _, m := range resp.Members {
		leader, health, db, term, index := "", "healthy", "", "", ""
		if m.IsLeader {
			leader = "*"
		}
		if !m.Healthy {
			health = "unhealthy"
		}
		if m.Id != "" {
			db = humanize.IBytes(uint64(m.DbSize))
			term = fmt.Sprint(m.RaftTerm)
			index = fmt.Sprint(m.RaftIndex)
		}
		rows = append(rows, []string{m.Id, m.Name, m.Role, leader, term, index, db, health, strings.Join(m.ClientUrls, ","), m.Error})
	}
	return p.Table([]string{"ID", "NAME", "ROLE", "LEADER", "TERM", "INDEX", "DB SIZE", "HEALTH", "CLIENT URLS", "ERROR"}, rows)
}

func newLeaveCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "leave",
		Short: "Make the agent leave the cluster and stop (a voter only if quorum stays)",
		Long: "Make the agent leave the cluster and stop (a voter only if quorum stays). It returns once the\n" +
			"agent has stopped and freed its ports; the membership change and the stop may take longer\n" +
			"than --call-timeout, so leave waits up to --call-timeout plus " + leaveStopWait.String() + ".",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			p, err := newPrinter(cmd.OutOrStdout(), g.output)
			if err != nil {
				return err
			}
			return withAgent(cmd, g, func(ctx context.Context, c *client.Client) error {
				// withAgent's deadline is the call timeout; a member's removal
				// waits for etcd to agree (seconds after a peer restarted)
				// and the stop for the agent's parts.
				ctx, cancel := context.WithTimeout(cmd.Context(), g.callTimeout+leaveStopWait)
				defer cancel()
				resp, err := c.Cluster.Leave(ctx, &beaconpb.LeaveRequest{})
				if err != nil {
					return err
				}
				if p.IsJSON() {
					return p.JSON(resp)
				}
				_, err = fmt.Fprintln(p.W, resp.Message)
				return err
			})
		},
	}
}

// leaveStopWait is what leave waits beyond the call timeout.
const leaveStopWait = 30 * time.Second

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
