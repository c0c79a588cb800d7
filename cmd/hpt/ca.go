package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/hpt-dev/hpt/internal/keystore"
	"github.com/hpt-dev/hpt/rpc"
)

type caKeyJSON struct {
	PublicKey   string `json:"public_key"`
	Fingerprint string `json:"fingerprint"`
}

type caJSON struct {
	UserCA     caKeyJSON `json:"user_ca"`
	HostCA     caKeyJSON `json:"host_ca"`
	KnownHosts string    `json:"known_hosts"`
}

func (a *app) caCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "ca", Short: "The cluster's SSH certificate authorities"}
	cmd.AddCommand(&cobra.Command{
		Use:   "show",
		Short: "Print the public halves of the SSH user and host CAs (needs view)",
		Long: `Prints the public halves of the cluster's SSH CAs with their SHA256
fingerprints. The user CA line (authorized_keys format) is what sshd's
TrustedUserCAKeys file holds on a host that accepts hpt certificates; the
host CA line goes into known_hosts, so that ssh trusts every host whose
certificate the cluster signed. Lines starting with # are comments to sshd
and ssh alike.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.withClient(func(c *rpc.Client) error {
				resp, err := rpc.NewCAClient(c.Conn()).Show(cmd.Context(), &rpc.ShowCARequest{})
				if err != nil {
					return err
				}
				out := caJSON{
					UserCA:     caKeyJSON{PublicKey: resp.GetUserCa().GetPublicKey(), Fingerprint: resp.GetUserCa().GetFingerprint()},
					HostCA:     caKeyJSON{PublicKey: resp.GetHostCa().GetPublicKey(), Fingerprint: resp.GetHostCa().GetFingerprint()},
					KnownHosts: resp.GetKnownHosts(),
				}
				if a.json() {
					return a.printJSON(out)
				}
				_, err = fmt.Fprintf(a.stdout, "# SSH user CA %s (for sshd's TrustedUserCAKeys)\n%s\n# SSH host CA %s (for known_hosts)\n%s\n",
					out.UserCA.Fingerprint, out.UserCA.PublicKey, out.HostCA.Fingerprint, out.KnownHosts)
				return err
			})
		},
	})
	return cmd
}

// addCAs is `hpt init --add-cas PATH`: it adds the SSH CAs a cluster
// keystore made before them lacks, in place. PATH is the keystore or the
// directory holding cluster.keystore.db.
func (a *app) addCAs(path string) error {
	if st, err := os.Stat(path); err == nil && st.IsDir() {
		path = filepath.Join(path, clusterKeystoreName)
	}
	// Open locks the file (and waits a second for another hpt holding it);
	// a running node does not hold its keystore, it reads it at start.
	ks, err := keystore.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return usagef("--add-cas %s: no such keystore (want the cluster keystore from hpt init, or its directory)", path)
	}
	if err != nil {
		return err
	}
	if ks.Kind() != keystore.KindCluster {
		ks.Close()
		return usagef("--add-cas %s: a %s keystore; want the cluster keystore from hpt init", path, ks.Kind())
	}
	cas, added, err := ks.EnsureSSHCAs()
	if cerr := ks.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	fps := fmt.Sprintf("user CA %s, host CA %s", keystore.CAFingerprint(cas.User), keystore.CAFingerprint(cas.Host))
	if len(added) == 0 {
		fmt.Fprintf(a.stderr, "hpt init: %s already holds the SSH CAs (%s); nothing changed\n", path, fps)
		return nil
	}
	fmt.Fprintf(a.stderr, `hpt init: added the SSH %s to %s
  SSH CAs: %s
  Copy this same file to every server node, over its keystore, and restart
  the nodes one at a time: every node must hold the same CAs, as it holds
  the same cluster key. Do not run --add-cas on each node's copy: that would
  make different CAs. A node keeps SSH access off until it restarts with
  this file.
`, strings.Join(added, " and "), path, fps)
	return nil
}
