package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/hpt-dev/hpt/agent"
	"github.com/hpt-dev/hpt/agent/provision"
	"github.com/hpt-dev/hpt/events"
	"github.com/hpt-dev/hpt/internal/enroll"
	"github.com/hpt-dev/hpt/internal/keystore"
	"github.com/hpt-dev/hpt/provconfig"
	"github.com/hpt-dev/hpt/rpc"
	"github.com/hpt-dev/hpt/rpc/pinned"
)

// defaultKeystore is upstream hpt's.
const defaultKeystore = "/etc/hpt/keystore.db"

func (a *app) keystorePath() string {
	return a.setting(a.keystore, "HPT_KEYSTORE", defaultKeystore)
}

// clusterMode reports whether key commands act on the cluster: SPEC section
// 4 makes that depend on --addr or HPT_ADDR only, not on `hpt login`.
func (a *app) clusterMode() bool {
	return a.addr != "" || a.getenv("HPT_ADDR") != ""
}

// keyJSON is the stable JSON of `hpt list-target-keys`.
type keyJSON struct {
	Name        string            `json:"name"`
	PublicKey   string            `json:"public_key"`
	Fingerprint string            `json:"fingerprint"`
	Labels      map[string]string `json:"labels,omitempty"`
	Revoked     bool              `json:"revoked"`
	Created     time.Time         `json:"created"`
}

func (a *app) keyCommands() []*cobra.Command {
	var target, out, labels string
	gen := &cobra.Command{
		Use:   "gen-target-keys --target NAME [--out FILE] [--labels k=v,...]",
		Short: "Make a keypair for a target: its keystore file, and its public key where clients find it",
		Long: `Generates a keypair for target NAME and writes a new target keystore (--out,
default NAME.keystore.db) holding it, for delivery to the target's
` + "`hpt serve --keystore`" + `.

Without --addr/HPT_ADDR the client keystore (--keystore/HPT_KEYSTORE, default
` + defaultKeystore + `) gets entry NAME with the public key only, and the target
keystore trusts this client's key (created on first use).

With --addr/HPT_ADDR the public key is registered in the cluster (an event),
and the target keystore trusts the cluster key and carries the gossip key
and seed node addresses. The private key exists only in the written file.
--labels (cluster mode only) sets the target's labels, the ones that job
--selector matches; what the agent itself announces (hpt serve --labels) is
shown as its claim and never selects.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := events.CheckName("target", target); err != nil {
				return usagef("--target: %v", err)
			}
			lbl, err := parseLabels("--labels", labels)
			if err != nil {
				return err
			}
			if len(lbl) > 0 && !a.clusterMode() {
				return usagef("--labels needs cluster mode (--addr or HPT_ADDR): labels select targets for cluster jobs")
			}
			if out == "" {
				out = target + ".keystore.db"
			}
			if _, err := os.Stat(out); err == nil {
				return usagef("--out %s already exists; refusing to overwrite a keystore", out)
			}
			pub, priv, err := ed25519.GenerateKey(rand.Reader)
			if err != nil {
				return err
			}
			// Which mode is chosen by --addr/HPT_ADDR alone (a saved
			// `hpt login` does not count), so say it every time, on
			// stderr where it does not disturb what scripts read.
			if a.clusterMode() {
				fmt.Fprintf(a.stderr, "gen-target-keys: cluster mode (--addr or HPT_ADDR is set): registering %s with the cluster\n", target)
				return a.genClusterTarget(cmd.Context(), target, out, pub, priv, lbl)
			}
			fmt.Fprintf(a.stderr, "gen-target-keys: direct mode (no --addr or HPT_ADDR; a saved hpt login does not count): %s goes into the client keystore %s, not a cluster\n", target, a.keystorePath())
			return a.genLocalTarget(target, out, pub, priv)
		},
	}
	gen.Flags().StringVar(&target, "target", "", "target name")
	gen.Flags().StringVar(&out, "out", "", "target keystore to write (default NAME.keystore.db)")
	gen.Flags().StringVar(&labels, "labels", "", "the target's labels k=v,... (cluster mode; job --selector matches them)")

	list := &cobra.Command{
		Use:   "list-target-keys",
		Short: "List known targets and their public keys",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			keys, err := a.listTargetKeys(cmd.Context())
			if err != nil {
				return err
			}
			if a.json() {
				return a.printJSON(keys)
			}
			tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tFINGERPRINT\tPUBLIC KEY\tREVOKED")
			for _, k := range keys {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%t\n", k.Name, k.Fingerprint, k.PublicKey, k.Revoked)
			}
			return tw.Flush()
		},
	}

	var revokeTarget string
	revoke := &cobra.Command{
		Use:   "revoke-target-keys --target NAME",
		Short: "Stop trusting a target's key (cluster: on every node, its streams closed)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if revokeTarget == "" {
				return usagef("--target NAME is required")
			}
			if a.clusterMode() {
				return a.withClient(func(c *rpc.Client) error {
					w, err := c.Keys.Revoke(cmd.Context(), &rpc.RevokeKeyRequest{Target: revokeTarget})
					if err != nil {
						return err
					}
					return a.written(w, "revoked target "+revokeTarget)
				})
			}
			ks, err := keystore.Open(a.keystorePath())
			if err != nil {
				return err
			}
			defer ks.Close()
			k, err := ks.Key(revokeTarget)
			if err != nil {
				return err
			}
			if k.Role != keystore.RoleTarget {
				return fmt.Errorf("%s is a %s key, not a target", revokeTarget, k.Role)
			}
			if err := ks.RemoveKey(revokeTarget); err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "removed target %s (%s) from %s\n", revokeTarget, pinned.Fingerprint(k.Public), ks.Path())
			return nil
		},
	}
	revoke.Flags().StringVar(&revokeTarget, "target", "", "target name")
	return []*cobra.Command{gen, list, revoke}
}

func (a *app) genLocalTarget(target, out string, pub ed25519.PublicKey, priv ed25519.PrivateKey) error {
	path := a.keystorePath()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("client keystore directory: %w", err)
	}
	ks, err := keystore.OpenOrCreate(path, keystore.KindClient)
	if err != nil {
		return err
	}
	defer ks.Close()
	clientKey, created, err := ks.EnsureIdentity()
	if err != nil {
		return err
	}
	if created {
		fmt.Fprintf(a.stderr, "created client keypair %s in %s\n", pinned.Fingerprint(clientKey.Public().(ed25519.PublicKey)), path)
	}
	if _, err := ks.Key(target); err == nil {
		return fmt.Errorf("%s already has a target %q: revoke-target-keys first to replace it", path, target)
	}
	if err := keystore.CreateTarget(out, target, priv, func(t *keystore.Keystore) error {
		return t.AddKey(keystore.Key{Name: "client", Role: keystore.RoleClient, Public: clientKey.Public().(ed25519.PublicKey)})
	}); err != nil {
		return err
	}
	if err := ks.AddKey(keystore.Key{Name: target, Role: keystore.RoleTarget, Public: pub}); err != nil {
		os.Remove(out)
		return err
	}
	fmt.Fprintf(a.stdout, "target %s: key %s\nwrote %s; deliver it to the target and run: hpt serve --keystore %s\n", target, pinned.Fingerprint(pub), out, filepath.Base(out))
	return nil
}

func (a *app) genClusterTarget(ctx context.Context, target, out string, pub ed25519.PublicKey, priv ed25519.PrivateKey, labels map[string]string) error {
	return a.withClient(func(c *rpc.Client) error {
		w, err := enroll.Register(ctx, c.Keys, enroll.Target{Name: target, Key: priv, Path: out, Labels: labels})
		if err != nil {
			return err
		}
		fmt.Fprintf(a.stdout, "target %s: key %s registered (index %d)\nwrote %s; deliver it to the target and run: hpt serve --keystore %s\n",
			target, pinned.Fingerprint(pub), w.GetIndex(), out, filepath.Base(out))
		return nil
	})
}

func (a *app) listTargetKeys(ctx context.Context) ([]keyJSON, error) {
	out := []keyJSON{}
	if a.clusterMode() {
		err := a.withClient(func(c *rpc.Client) error {
			resp, err := c.Keys.List(ctx, &rpc.ListKeysRequest{})
			if err != nil {
				return err
			}
			for _, k := range resp.GetKeys() {
				out = append(out, keyJSON{Name: k.GetTarget(), PublicKey: base64.StdEncoding.EncodeToString(k.GetPublicKey()), Fingerprint: k.GetFingerprint(),
					Labels: k.GetLabels(), Revoked: k.GetRevoked(), Created: time.Unix(0, k.GetCreatedUnixNano()).UTC()})
			}
			return nil
		})
		return out, err
	}
	ks, err := keystore.Open(a.keystorePath())
	if err != nil {
		return nil, err
	}
	defer ks.Close()
	keys, err := ks.Keys()
	if err != nil {
		return nil, err
	}
	for _, k := range keys {
		if k.Role != keystore.RoleTarget {
			continue
		}
		out = append(out, keyJSON{Name: k.Name, PublicKey: base64.StdEncoding.EncodeToString(k.Public), Fingerprint: pinned.Fingerprint(k.Public), Created: k.Created.UTC()})
	}
	return out, nil
}

// applyDirect is `hpt --target NAME --ip HOST FILE.toml`: the seed's
// direct remote provisioning, no cluster involved.
func (a *app) applyDirect(ctx context.Context, target, addr, path string, dryRun bool, vars map[string]string) error {
	// Validate here too, so a bad config never leaves this machine.
	bundle, _, err := provconfig.Load(path)
	if err != nil {
		return err
	}
	ks, err := keystore.Open(a.keystorePath())
	if err != nil {
		return err
	}
	clientKey, kerr := ks.Identity()
	tk, terr := ks.Key(target)
	ks.Close()
	if kerr != nil {
		return fmt.Errorf("client keystore %s: %w", a.keystorePath(), kerr)
	}
	if terr != nil {
		return fmt.Errorf("target %q is not in %s (hpt gen-target-keys --target %s): %w", target, a.keystorePath(), target, terr)
	}
	if tk.Role != keystore.RoleTarget {
		return fmt.Errorf("%q in %s is a %s key, not a target", target, a.keystorePath(), tk.Role)
	}
	if dryRun && !a.json() {
		fmt.Fprintln(a.stdout, "DRY RUN: nothing is changed; \"changed\" means \"would change\".")
	}
	rep := &provision.Report{DryRun: dryRun, Blocks: []provision.BlockResult{}}
	done, err := agent.ProvisionDirect(ctx, agent.DirectRequest{
		Addr: addr, Target: target, TargetKey: tk.Public, ClientKey: clientKey,
		Bundle: bundle, DryRun: dryRun, Vars: vars,
		OnBlock: func(b provision.BlockResult) {
			rep.Blocks = append(rep.Blocks, b)
			if !a.json() {
				provision.WriteBlockText(a.stdout, b)
			}
		},
	})
	if err != nil {
		return err
	}
	t := done.GetTotals()
	rep.Totals = provision.Totals{OK: int(t.GetOk()), Changed: int(t.GetChanged()), Failed: int(t.GetFailed()), Skipped: int(t.GetSkipped())}
	return a.finishReport(rep)
}
