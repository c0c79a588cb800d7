package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/crypto/ssh"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/hpt-dev/hpt/events"
	"github.com/hpt-dev/hpt/internal/sshclient"
	"github.com/hpt-dev/hpt/rpc"
)

// credentialJSON is the stable JSON of `hpt credentials list` (SPEC
// section 10).
type credentialJSON struct {
	ID          string `json:"id"`
	Subject     string `json:"subject"`
	Destination string `json:"destination"`
	Kind        string `json:"kind"`
	Role        string `json:"role"`
	ValidBefore string `json:"valid_before"`
	Status      string `json:"status"`
}

// errMeshNotBuilt refuses hpt ssh to mesh destinations until mesh mode
// exists.
var errMeshNotBuilt = errors.New("mesh routing is not built yet (issue #19)")

func (a *app) credentialsCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "credentials", Short: "Short-lived credentials for destinations (list, revoke, ssh)"}
	var all bool
	var subject string
	list := &cobra.Command{
		Use:   "list [--all] [--subject S]",
		Short: "List live credentials (yours only without view on destinations/*)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.withClient(func(c *rpc.Client) error {
				req := &rpc.ListCredentialsRequest{Subject: subject, All: all}
				resp, err := c.Credentials.List(cmd.Context(), req)
				if status.Code(err) == codes.PermissionDenied && subject == "" {
					// Without view on every destination, one's own.
					who, werr := c.Cluster.Whoami(cmd.Context(), &rpc.WhoamiRequest{})
					if werr != nil {
						return err
					}
					req.Subject = who.GetSubject()
					resp, err = c.Credentials.List(cmd.Context(), req)
				}
				if err != nil {
					return err
				}
				out := []credentialJSON{}
				for _, ci := range resp.GetCredentials() {
					out = append(out, credentialJSON{ID: ci.GetId(), Subject: ci.GetSubject(), Destination: ci.GetDestination(), Kind: ci.GetKind(),
						Role: ci.GetRole(), ValidBefore: time.Unix(0, ci.GetValidBeforeUnixNano()).UTC().Format(time.RFC3339), Status: ci.GetStatus()})
				}
				if a.json() {
					return a.printJSON(out)
				}
				tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "ID\tSUBJECT\tDESTINATION\tKIND\tROLE\tVALID BEFORE\tSTATUS")
				for _, c := range out {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", c.ID, c.Subject, c.Destination, c.Kind, c.Role, c.ValidBefore, c.Status)
				}
				return tw.Flush()
			})
		},
	}
	list.Flags().BoolVar(&all, "all", false, "include expired and revoked credentials")
	list.Flags().StringVar(&subject, "subject", "", "only this subject's (user:NAME or machine:NAME)")
	var reason string
	revoke := &cobra.Command{
		Use:   "revoke ID",
		Short: "Revoke a credential (admin on its destination, or your own)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := events.CheckName("credential", args[0]); err != nil {
				return usagef("ID: %v", err)
			}
			return a.withClient(func(c *rpc.Client) error {
				w, err := c.Credentials.Revoke(cmd.Context(), &rpc.RevokeCredentialRequest{Id: args[0], Reason: reason})
				if err != nil {
					return err
				}
				return a.written(w, "revoked credential "+args[0])
			})
		},
	}
	revoke.Flags().StringVar(&reason, "reason", "", "why (recorded in the event)")
	cmd.AddCommand(list, revoke, a.credentialsSSHCommand())
	return cmd
}

// sshDir is where credentials ssh writes by default: beside the CLI's
// config (cli.json), in ssh/.
func (a *app) sshDir() string {
	p := a.configPath()
	if p == "" {
		return ""
	}
	return filepath.Join(filepath.Dir(p), "ssh")
}

// newSSHKey makes an Ed25519 key in memory, with its authorized_keys line.
func newSSHKey() (ed25519.PrivateKey, ssh.Signer, []byte, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, nil, nil, err
	}
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		return nil, nil, nil, err
	}
	return priv, s, ssh.MarshalAuthorizedKey(s.PublicKey()), nil
}

func (a *app) issueSSH(ctx context.Context, dest, login string, ttl time.Duration, pub []byte) (*rpc.IssueSSHResponse, error) {
	if ttl < 0 {
		return nil, usagef("--ttl %v: must not be negative", ttl)
	}
	var resp *rpc.IssueSSHResponse
	err := a.withClient(func(c *rpc.Client) error {
		var err error
		resp, err = c.Credentials.IssueSSH(ctx, &rpc.IssueSSHRequest{Destination: dest, Login: login, TtlNanos: int64(ttl), PublicKey: pub})
		return err
	})
	return resp, err
}

// sshConfigBlock is the ssh_config Host block for files written under
// prefix.
func sshConfigBlock(dest, addr, login, prefix string, mesh bool) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		host, port = addr, "22"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "Host %s\n", dest)
	if mesh {
		b.WriteString("  ProxyCommand hpt proxy %h %p\n")
	} else {
		fmt.Fprintf(&b, "  HostName %s\n  Port %s\n", host, port)
	}
	fmt.Fprintf(&b, "  User %s\n  IdentityFile %s\n  CertificateFile %s-cert.pub\n  UserKnownHostsFile %s-known_hosts\n  IdentitiesOnly yes\n",
		login, prefix, prefix, prefix)
	if !mesh {
		// The host certificate names the address dialled (HostPrincipals).
		fmt.Fprintf(&b, "  HostKeyAlias %s\n", host)
	}
	return b.String()
}

func (a *app) credentialsSSHCommand() *cobra.Command {
	var login, out string
	var ttl time.Duration
	cmd := &cobra.Command{
		Use:   "ssh DEST [--login L] [--ttl D] [--out PREFIX]",
		Short: "Get an SSH certificate for plain OpenSSH (ssh, scp, sftp)",
		Long: `Makes an Ed25519 key on this machine (it never leaves it), has the
cluster certify its public half for DEST, and writes PREFIX (the private
key, 0600), PREFIX.pub, PREFIX-cert.pub, PREFIX-known_hosts (the host
CA as an @cert-authority line) and PREFIX-ssh_config (the Host block). It
prints the known_hosts line and the ssh_config block; hpt ssh-config prints
the blocks again.

PREFIX defaults to DEST in the ssh directory beside the CLI's config
($XDG_CONFIG_HOME/hpt/ssh/DEST, or ~/.config/hpt/ssh/DEST).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dest := args[0]
			if err := events.CheckDestinationName(dest); err != nil {
				return usagef("DEST: %v", err)
			}
			prefix := out
			if prefix == "" {
				dir := a.sshDir()
				if dir == "" {
					return usagef("--out: no default (HOME is not set): give --out PREFIX")
				}
				prefix = filepath.Join(dir, dest)
			}
			priv, _, pub, err := newSSHKey()
			if err != nil {
				return fmt.Errorf("make key: %w", err)
			}
			resp, err := a.issueSSH(cmd.Context(), dest, login, ttl, pub)
			if err != nil {
				return err
			}
			block, err := ssh.MarshalPrivateKey(priv, "hpt "+resp.GetId())
			if err != nil {
				return fmt.Errorf("encode key: %w", err)
			}
			if err := os.MkdirAll(filepath.Dir(prefix), 0o700); err != nil {
				return fmt.Errorf("--out: %w", err)
			}
			knownHosts := "@cert-authority * " + resp.GetHostCaPublicKey() + "\n"
			hostBlock := sshConfigBlock(dest, resp.GetAddr(), resp.GetLogin(), prefix, resp.GetMesh())
			files := []struct {
				path string
				data []byte
				perm os.FileMode
			}{
				{prefix, pem.EncodeToMemory(block), 0o600},
				{prefix + ".pub", pub, 0o644},
				{prefix + "-cert.pub", []byte(resp.GetCertificate()), 0o644},
				{prefix + "-known_hosts", []byte(knownHosts), 0o644},
				{prefix + "-ssh_config", []byte(hostBlock), 0o644},
			}
			for _, f := range files {
				if err := writeFileAtomic(f.path, f.data, f.perm); err != nil {
					return fmt.Errorf("--out: %w", err)
				}
			}
			if a.json() {
				return a.printJSON(map[string]any{
					"id": resp.GetId(), "destination": dest, "login": resp.GetLogin(), "principals": resp.GetPrincipals(),
					"valid_after":  time.Unix(0, resp.GetValidAfterUnixNano()).UTC().Format(time.RFC3339),
					"valid_before": time.Unix(0, resp.GetValidBeforeUnixNano()).UTC().Format(time.RFC3339),
					"addr":         resp.GetAddr(), "mesh": resp.GetMesh(), "private_key": prefix, "certificate": prefix + "-cert.pub",
					"known_hosts": prefix + "-known_hosts",
				})
			}
			fmt.Fprintf(a.stdout, "# credential %s for %s, valid until %s; key %s\n", resp.GetId(), strings.Join(resp.GetPrincipals(), ","),
				time.Unix(0, resp.GetValidBeforeUnixNano()).UTC().Format(time.RFC3339), prefix)
			fmt.Fprintf(a.stdout, "# known_hosts (written to %s-known_hosts):\n%s", prefix, knownHosts)
			fmt.Fprintf(a.stdout, "# ssh_config (written to %s-ssh_config):\n%s", prefix, hostBlock)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&login, "login", "", "the Unix login (default: the only one granted)")
	f.DurationVar(&ttl, "ttl", 0, "lifetime (default 1h, at most 12h; never past the token's expiry)")
	f.StringVar(&out, "out", "", "file prefix (default: DEST under the CLI's ssh directory)")
	return cmd
}

func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(perm); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// sshConfigCommand prints the Host blocks credentials ssh wrote beside
// its certificates. It reads only those files: it needs no grant, and
// prints nothing for a destination this CLI holds no certificate for.
func (a *app) sshConfigCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "ssh-config [DEST...]",
		Short: "Print ssh_config Host blocks for the certificates hpt credentials ssh wrote",
		Long: `Prints the ssh_config Host block of each destination (default: every
one this CLI holds a certificate for under its ssh directory,
$XDG_CONFIG_HOME/hpt/ssh), for ssh -F or an Include line in ~/.ssh/config.
Run hpt credentials ssh DEST first.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			dir := a.sshDir()
			if dir == "" {
				return usagef("no ssh directory (HOME is not set)")
			}
			dests := args
			if len(dests) == 0 {
				m, _ := filepath.Glob(filepath.Join(dir, "*-ssh_config"))
				for _, p := range m {
					dests = append(dests, strings.TrimSuffix(filepath.Base(p), "-ssh_config"))
				}
				sort.Strings(dests)
			}
			for _, name := range dests {
				if err := events.CheckDestinationName(name); err != nil {
					return usagef("DEST: %v", err)
				}
				b, err := os.ReadFile(filepath.Join(dir, name+"-ssh_config"))
				if err != nil {
					return fmt.Errorf("destination %q: %w (run hpt credentials ssh %s)", name, err, name)
				}
				fmt.Fprint(a.stdout, string(b))
			}
			return nil
		},
	}
}

func (a *app) sshCommand() *cobra.Command {
	var insecure bool
	var ttl time.Duration
	cmd := &cobra.Command{
		Use:   "ssh [LOGIN@]DEST [-- COMMAND...]",
		Short: "Log in to an ssh destination with a fresh certificate (like tsh ssh)",
		Long: `Makes an Ed25519 key in memory, has the cluster certify it for DEST, and
connects, verifying the host by the cluster's host CA (never trust on first
use). With COMMAND, runs it and exits with its status; without, opens a
shell (with a pty on a terminal).`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			login, dest, ok := strings.Cut(args[0], "@")
			if !ok {
				login, dest = "", args[0]
			}
			if err := events.CheckDestinationName(dest); err != nil {
				return usagef("DEST: %v", err)
			}
			if ok && login == "" {
				return usagef("LOGIN@DEST: empty login")
			}
			_, signer, pub, err := newSSHKey()
			if err != nil {
				return fmt.Errorf("make key: %w", err)
			}
			resp, err := a.issueSSH(cmd.Context(), dest, login, ttl, pub)
			if err != nil {
				return err
			}
			if resp.GetMesh() {
				return errMeshNotBuilt
			}
			k, _, _, _, err := ssh.ParseAuthorizedKey([]byte(resp.GetCertificate()))
			cert, isCert := k.(*ssh.Certificate)
			if err != nil || !isCert {
				return fmt.Errorf("the node's certificate does not parse: %v", err)
			}
			certSigner, err := ssh.NewCertSigner(cert, signer)
			if err != nil {
				return fmt.Errorf("certificate: %w", err)
			}
			var hostCA ssh.PublicKey
			opts := sshclient.Options{InsecureHostKey: insecure}
			if insecure {
				fmt.Fprintf(a.stderr, "hpt: WARNING: --insecure-host-key: NOT verifying %s (%s) by the cluster's host CA: whoever answers at that address gets this session, its commands and what you type\n",
					dest, resp.GetAddr())
			} else {
				hostCA, _, _, _, err = ssh.ParseAuthorizedKey([]byte(resp.GetHostCaPublicKey()))
				if err != nil {
					return fmt.Errorf("host CA from the node: %w", err)
				}
			}
			dctx, cancel := context.WithTimeout(cmd.Context(), 30*time.Second)
			defer cancel()
			cl, err := sshclient.Dial(dctx, resp.GetAddr(), resp.GetLogin(), certSigner, hostCA, opts)
			if err != nil {
				return fmt.Errorf("ssh %s@%s (%s): %w", resp.GetLogin(), dest, resp.GetAddr(), err)
			}
			defer cl.Close()
			var code int
			if rest := args[1:]; len(rest) > 0 {
				code, err = cl.Run(cmd.Context(), shellJoin(rest), a.stdin, a.stdout, a.stderr)
			} else {
				code, err = cl.Shell(cmd.Context(), a.stdin, a.stdout, a.stderr)
			}
			if err != nil {
				return fmt.Errorf("ssh %s@%s: %w", resp.GetLogin(), dest, err)
			}
			if code != 0 {
				return exitError{code: code}
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&insecure, "insecure-host-key", false, "accept any host key: NO host verification (a host not certified by the cluster)")
	cmd.Flags().DurationVar(&ttl, "ttl", 0, "certificate lifetime (default 1h)")
	return cmd
}

// shellJoin quotes args into one command line for the remote shell, as
// ssh would need the caller to: each word arrives as it was given.
func shellJoin(args []string) string {
	q := make([]string, len(args))
	for i, s := range args {
		if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789@%+=:,./_-") == "" {
			q[i] = s
		} else {
			q[i] = "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
		}
	}
	return strings.Join(q, " ")
}
