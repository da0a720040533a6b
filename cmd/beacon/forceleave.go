package main

import (
	"context"
	"fmt"

	"github.com/beaconhq/beacon/api/beaconpb"
	"github.com/beaconhq/beacon/client"
	"github.com/spf13/cobra"
)

func init() { extraCommands = append(extraCommands, newForceLeaveCmd) }

// newForceLeaveCmd is `beacon force-leave NAME`: the agent removes another
// member, whose host is gone for good, from the cluster (Cluster.RemoveMember).
func newForceLeaveCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "force-leave NAME",
		Short: "Remove a dead member from the cluster (only if it does not answer and quorum stays)",
		Long: `force-leave asks the agent to remove the etcd member NAME (a voter or a
learner; NAME may also be its hex member id) whose host is gone for good.
It is refused when NAME answers (a live member leaves with 'beacon leave' on
its own agent), when the voters that remain would lack a healthy majority,
and for proxies, which are not members: a proxy's node record expires by
itself. A removed member's data dir cannot be resumed; to bring its host
back, delete the data dir and start the agent with --join.`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return &usageError{fmt.Errorf("%s: takes the name of one member, got %d arguments (see %s --help)", cmd.CommandPath(), len(args), cmd.CommandPath())}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			return withAgent(cmd, g, func(ctx context.Context, c *client.Client) error {
				resp, err := c.Cluster.RemoveMember(ctx, &beaconpb.RemoveMemberRequest{Name: args[0]})
				if err != nil {
					return err
				}
				fmt.Fprintln(cmd.OutOrStdout(), resp.Message)
				return nil
			})
		},
	}
}
