package main

import (
	"github.com/beaconhq/beacon/agent"
	"github.com/spf13/cobra"
)

func newAgentCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Run the beacon agent (the sidecar) on this host",
		Long: `Run the beacon agent. With no flags it starts a one-node cluster with its
data in ./beacon-data. Every flag is also a config file key and a BEACON_*
environment variable (--client-url, client-url:, BEACON_CLIENT_URL);
precedence is flag > env > config file > default.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := agent.LoadConfig(cmd.Flags())
			if err != nil {
				return err
			}
			lg, err := agent.NewLogger(cfg.LogLevel)
			if err != nil {
				return err
			}
			defer lg.Sync() //nolint:errcheck // stderr may not sync
			reload := func() (agent.Config, error) { return agent.LoadConfig(cmd.Flags()) }
			return agent.Run(cmd.Context(), cfg, lg, reload)
		},
	}
	agent.BindFlags(cmd.Flags())
	return cmd
}
