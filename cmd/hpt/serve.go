package main

import (
	"fmt"
	"net"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/hpt-dev/hpt/agent"
	"github.com/hpt-dev/hpt/agent/sshaccess"
	"github.com/hpt-dev/hpt/events"
	"github.com/hpt-dev/hpt/internal/sdactivation"
	"github.com/hpt-dev/hpt/rpc/pinned"
)

func (a *app) serveCommand() *cobra.Command {
	var port int
	var bind, labels, join, gossip, journal string
	var manageSSHD bool
	var sshdDir, sshdHostKey, sshdReload string
	cmd := &cobra.Command{
		Use:   "serve --keystore FILE [--port 6632]",
		Short: "Run the agent: accept provisioning from trusted clients",
		Long: `Runs the target agent. It accepts direct provisioning (hpt --target ...) on
--port from clients whose key its keystore trusts. --port 0 picks a free
port and prints it, so several agents can share a host. Started by systemd
socket activation (hpt unit-file agent-socket), it uses the passed socket.

With a keystore made by gen-target-keys against a cluster, the agent also
joins the cluster: it gossips (--gossip, seeds from --join or the keystore),
keeps one authenticated stream to a live node, and runs the jobs it is
sent, each at most once (--journal records them).

With --manage-sshd (or any --sshd-* flag) the agent is an SSH connector: it
reports sshd's host key to the node and keeps the drop-in hpt.conf, and the
files it names under hpt/, in --sshd-dir current with the SSH access the
cluster grants (user CA, principals per login, revocation list, host
certificate), running --sshd-reload when sshd must re-read them. It never
writes the main sshd_config. Without it, SSH access state is ignored.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			path := a.setting(a.keystore, "HPT_KEYSTORE", "")
			if path == "" {
				return usagef("--keystore: the target keystore from `hpt gen-target-keys` is required")
			}
			lbl, err := parseLabels("--labels", labels)
			if err != nil {
				return err
			}
			// Under systemd socket activation (hpt-agent.socket) the
			// direct port is the socket systemd passed; --port is ignored.
			ln, err := sdactivation.Listener()
			if err != nil {
				return err
			}
			var sshd *sshaccess.Config
			flags := cmd.Flags()
			if manageSSHD || flags.Changed("sshd-dir") || flags.Changed("sshd-host-key") || flags.Changed("sshd-reload") {
				reload, err := sshaccess.SplitCommand(sshdReload)
				if err != nil {
					return usagef("--sshd-reload: %v", err)
				}
				sshd = &sshaccess.Config{Dir: sshdDir, HostKeyPath: sshdHostKey, Reload: reload}
				if err := sshd.Validate(); err != nil {
					return usagef("%v", err)
				}
			}
			ag, err := agent.New(agent.Config{
				Keystore: path, Listen: net.JoinHostPort(bind, strconv.Itoa(port)), Listener: ln, Labels: lbl, Logger: a.logger(),
				Join: splitList(join), GossipListen: gossip, Journal: journal, SSHD: sshd,
			})
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
	cmd.Flags().StringVar(&labels, "labels", "", "labels this agent announces k=v,... (templates see .Target.Labels; shown as its claim, jobs select on the labels set by gen-target-keys --labels)")
	cmd.Flags().StringVar(&join, "join", "", "gossip addresses of cluster nodes, comma-separated (default: the keystore's seeds)")
	cmd.Flags().StringVar(&gossip, "gossip", ":7402", "the agent's gossip address (port 0: a free one)")
	cmd.Flags().StringVar(&journal, "journal", "", "file recording the jobs run here (default: KEYSTORE.journal)")
	cmd.Flags().BoolVar(&manageSSHD, "manage-sshd", false, "be an SSH connector: keep this host's sshd trusting the cluster (implied by any --sshd-* flag)")
	cmd.Flags().StringVar(&sshdDir, "sshd-dir", sshaccess.DefaultDir, "directory sshd_config includes *.conf from; hpt.conf and hpt/ are written there")
	cmd.Flags().StringVar(&sshdHostKey, "sshd-host-key", sshaccess.DefaultHostKeyPath, "sshd's host public key, reported to the node for a host certificate")
	cmd.Flags().StringVar(&sshdReload, "sshd-reload", strings.Join(sshaccess.DefaultReload(), " "), "command making sshd re-read its config (split into words like a shell, run without one)")
	return cmd
}

// parseLabels parses flag's k=v,k=v and applies the label limits.
func parseLabels(flag, s string) (map[string]string, error) {
	out := map[string]string{}
	for _, kv := range splitList(s) {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, usagef("%s: label %q: want key=value", flag, kv)
		}
		out[k] = v
	}
	if err := events.CheckLabels(flag, out); err != nil {
		return nil, usagef("%v", err)
	}
	return out, nil
}
