package main

import (
	"strings"

	"github.com/spf13/cobra"

	"github.com/hpt-dev/hpt/deploy"
)

func (a *app) unitFileCommand() *cobra.Command {
	var bin string
	cmd := &cobra.Command{
		Use:   "unit-file " + strings.Join(deploy.UnitNames(), "|"),
		Short: "Print a systemd unit for a server node, an agent, or the agent's socket",
		Long: `Prints a systemd unit to stdout; the comments at its top say how to install
it. agent-socket is socket activation for the agent's direct provisioning
port (6632): systemd holds the port and hands it to hpt-agent.service.`,
		Args:      cobra.ExactArgs(1),
		ValidArgs: deploy.UnitNames(),
		RunE: func(_ *cobra.Command, args []string) error {
			_, text, err := deploy.Unit(args[0], bin)
			if err != nil {
				return usageError{err}
			}
			_, err = a.stdout.Write(text)
			return err
		},
	}
	cmd.Flags().StringVar(&bin, "bin", deploy.DefaultBinary, "path of the hpt binary in ExecStart")
	return cmd
}
