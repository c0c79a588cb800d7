package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/hpt-dev/hpt/agent"
	"github.com/hpt-dev/hpt/rpc/pinned"
)

func (a *app) serveCommand() *cobra.Command {
	var port int
	var bind, labels string
	cmd := &cobra.Command{
		Use:   "serve --keystore FILE [--port 6632]",
		Short: "Run the agent: accept provisioning from trusted clients",
		Long: `Runs the target agent. It accepts direct provisioning (hpt --target ...) on
--port from clients whose key its keystore trusts. --port 0 picks a free
port and prints it, so several agents can share a host.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			path := a.setting(a.keystore, "HPT_KEYSTORE", "")
			if path == "" {
				return usagef("--keystore: the target keystore from `hpt gen-target-keys` is required")
			}
			lbl, err := parseLabels(labels)
			if err != nil {
				return err
			}
			ag, err := agent.New(agent.Config{Keystore: path, Listen: fmt.Sprintf("%s:%d", bind, port), Labels: lbl, Logger: a.logger()})
			if err != nil {
				return err
			}
			defer ag.Close()
			fmt.Fprintf(a.stdout, "hpt serve: target %s listening on %s, key %s\n", ag.Name(), ag.Addr(), pinned.Fingerprint(ag.PublicKey()))
			<-cmd.Context().Done()
			return nil
		},
	}
	cmd.Flags().IntVar(&port, "port", agent.DefaultPort, "direct provisioning port (0 picks a free one)")
	cmd.Flags().StringVar(&bind, "bind", "", "address to listen on (default all)")
	cmd.Flags().StringVar(&labels, "labels", "", "target labels k=v,... (templates see .Target.Labels)")
	return cmd
}

// parseLabels parses k=v,k=v.
func parseLabels(s string) (map[string]string, error) {
	out := map[string]string{}
	for _, kv := range splitList(s) {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, usagef("label %q: want key=value", kv)
		}
		out[k] = v
	}
	return out, nil
}
