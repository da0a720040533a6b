package main

import (
	"fmt"
	"runtime"

	"github.com/beaconhq/beacon/internal/cliout"
	"github.com/beaconhq/beacon/version"
	"github.com/spf13/cobra"
)

func newVersionCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print beacon's version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			p, err := newPrinter(cmd.OutOrStdout(), g.output)
			if err != nil {
				return err
			}
			if p.IsJSON() {
				return p.JSON(cliout.Object{}.With("version", version.String()).With("go", runtime.Version()).
					With("os", runtime.GOOS).With("arch", runtime.GOARCH))
			}
			_, err = fmt.Fprintf(p.W, "beacon %s (%s %s/%s)\n", version.String(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
			return err
		},
	}
}
