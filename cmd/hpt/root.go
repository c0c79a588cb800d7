package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/hpt-dev/hpt/agent"
	"github.com/hpt-dev/hpt/node"
	"github.com/hpt-dev/hpt/rpc"
	"github.com/hpt-dev/hpt/rpc/pinned"
)

// Exit codes (SPEC section 5), and one SPEC leaves open: a job in which
// no target failed but some did not answer gets 3, so that a script can
// tell "retry when the hosts are back" from a failure (1) and from a
// mistake in the command line (2).
const (
	exitOK          = 0
	exitFailure     = 1
	exitUsage       = 2
	exitUnreachable = 3
)

// usageError marks errors in how hpt was invoked.
type usageError struct{ error }

func usagef(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }

// exitError carries a specific exit code for an error already reported
// (a job with unreachable targets, say).
type exitError struct {
	code int
	err  error
}

func (e exitError) Error() string { return e.err.Error() }

// app holds what every command shares: global options and streams.
type app struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	getenv         func(string) string

	addr, token, clusterKey, keystore, output string
	stale                                     bool
	logLevel                                  string
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer, getenv func(string) string) int {
	a := &app{stdin: stdin, stdout: stdout, stderr: stderr, getenv: getenv}
	root := a.rootCommand()
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := root.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	var ee exitError
	if errors.As(err, &ee) {
		if ee.err != nil && ee.err.Error() != "" {
			fmt.Fprintln(stderr, "hpt:", ee.err)
		}
		return ee.code
	}
	fmt.Fprintln(stderr, "hpt:", describe(err))
	var ue usageError
	if errors.As(err, &ue) {
		return exitUsage
	}
	return exitFailure
}

// classifyUsage makes every error in how a command of tree was invoked a
// usageError where cobra produces it (flag parsing and argument
// validation), so run can tell usage from failure by type rather than by
// cobra's wording. A group command (subcommands, no Run of its own) gets a
// Run that shows its help and an argument check that refuses an unknown
// subcommand with suggestions: cobra alone would print help and exit 0
// for `hpt targets lst`. Cobra's required-flag and flag-group checks are
// not covered: no command uses them (TestUsageErrorsAreClassified checks).
func classifyUsage(tree *cobra.Command) {
	tree.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	// Cobra adds help and completion only when it executes; add them now
	// so that the walk below covers them too.
	tree.InitDefaultHelpCmd()
	tree.InitDefaultCompletionCmd()
	for _, c := range tree.Commands() {
		if c.Name() == "help" && c.Run != nil {
			c.RunE = helpTopicCheck(c.Run)
			c.Run = nil
		}
	}
	var walk func(*cobra.Command)
	walk = func(c *cobra.Command) {
		// SuggestionsFor suggests nothing at distance 0, cobra's unset
		// value; 2 is what cobra itself uses for the root command.
		c.SuggestionsMinimumDistance = 2
		switch {
		case c.HasSubCommands() && !c.Runnable():
			c.Args = unknownSubcommand
			c.RunE = func(cmd *cobra.Command, _ []string) error { return cmd.Help() }
		case c.Args != nil:
			check := c.Args
			c.Args = func(cmd *cobra.Command, args []string) error {
				if err := check(cmd, args); err != nil {
					return usageError{err}
				}
				return nil
			}
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(tree)
}

// helpTopicCheck wraps cobra's help command: for a topic that is no
// command (`hpt help targts`) it would show the root's help and exit 0,
// because the root takes arbitrary arguments (FILE.toml).
func helpTopicCheck(show func(*cobra.Command, []string)) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		topic, rest, err := cmd.Root().Find(args)
		if err != nil {
			return usageError{err}
		}
		if len(rest) > 0 {
			return usagef("unknown help topic %q%s", strings.Join(args, " "), suggest(topic, rest[0]))
		}
		show(cmd, args)
		return nil
	}
}

// unknownSubcommand is the argument check of a group command: any argument
// is a subcommand that does not exist.
func unknownSubcommand(cmd *cobra.Command, args []string) error {
	if len(args) == 0 {
		return nil
	}
	return usagef("unknown command %q for %q%s", args[0], cmd.CommandPath(), suggest(cmd, args[0]))
}

// suggest is cobra's "did you mean" list for a mistyped subcommand of cmd,
// as one clause ("" when nothing is close).
func suggest(cmd *cobra.Command, typo string) string {
	s := cmd.SuggestionsFor(typo)
	if len(s) == 0 {
		return ""
	}
	return "; did you mean " + strings.Join(s, " or ") + "? (see " + cmd.CommandPath() + " --help)"
}

// describe turns an RPC error into the sentence an operator needs.
func describe(err error) string {
	var ue *rpc.UnreachableError
	if errors.As(err, &ue) {
		return "cannot reach the cluster (is it running, and are --addr/HPT_ADDR right?): " + ue.Error()
	}
	s, ok := status.FromError(err)
	if !ok {
		return err.Error()
	}
	switch s.Code() {
	case codes.Unauthenticated:
		return "not authenticated: " + s.Message()
	case codes.PermissionDenied:
		return s.Message()
	case codes.Unavailable:
		if pinned.IsRefusedByPeer(err) || strings.Contains(s.Message(), "refused") {
			return "cannot connect: " + s.Message()
		}
		return "cluster unavailable: " + s.Message()
	case codes.DeadlineExceeded:
		return "timed out: " + s.Message()
	}
	return s.Message()
}

func (a *app) rootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "hpt [FILE.toml]",
		Short: "hpt: who may reach which hosts, and what gets provisioned on them",
		Long: `hpt: who may reach which hosts, and what gets provisioned on them.

Direct mode, with no cluster (as upstream hpt):
  hpt FILE.toml [--dry-run]
      apply FILE.toml on this host (as hpt apply does)
  hpt --target NAME --ip HOST [--port 6632] FILE.toml [--dry-run]
      provision one target through its hpt serve: --target names the
      target's key in the client keystore (--keystore, HPT_KEYSTORE),
      --ip and --port (default 6632) its hpt serve's address
  hpt gen-target-keys --target NAME --out FILE
      make a target's keystore (without HPT_ADDR: for direct mode)`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Args:          cobra.ArbitraryArgs,
	}
	pf := root.PersistentFlags()
	pf.StringVar(&a.addr, "addr", "", "node addresses, comma-separated; any node will do (env HPT_ADDR)")
	pf.StringVar(&a.token, "token", "", "API token sk_... (env HPT_TOKEN)")
	pf.StringVar(&a.clusterKey, "cluster-key", "", "pinned cluster key fingerprint SHA256:... (env HPT_CLUSTER_KEY)")
	pf.StringVar(&a.keystore, "keystore", "", "keystore file (env HPT_KEYSTORE)")
	pf.StringVarP(&a.output, "output", "o", "table", "output format: table or json")
	pf.BoolVar(&a.stale, "stale", false, "read whatever the answering node has applied, without asking the leader (faster; works without a quorum)")
	pf.StringVar(&a.logLevel, "log-level", "info", "log level for servers and agents: debug, info, warn, error")
	root.PersistentPreRunE = func(cmd *cobra.Command, _ []string) error {
		if a.output != "table" && a.output != "json" {
			return usagef("-o %q: want table or json", a.output)
		}
		return nil
	}
	root.AddCommand(
		a.devCommand(), a.initCommand(), a.serverCommand(), a.loginCommand(),
		a.clusterCommand(), a.eventsCommand(),
		a.identityCommand("user"), a.identityCommand("machine"), a.identityCommand("group"),
		a.tokensCommand(), a.grantsCommand(), a.authCommand(), a.benchCommand(),
		a.applyCommand(), a.serveCommand(), a.jobCommand(), a.targetsCommand(), a.unitFileCommand(), a.healthcheckCommand(),
		a.whoamiCommand(), a.caCommand(), a.destinationsCommand(),
		a.credentialsCommand(), a.sshConfigCommand(), a.sshCommand(),
	)
	root.AddCommand(a.keyCommands()...)
	// `hpt FILE.toml` applies locally and `hpt --target NAME --ip HOST
	// FILE.toml` on a target, as upstream hpt did.
	var target, ip string
	var port int
	var dryRun bool
	// Direct mode's flags are the root command's own, so no subcommand's
	// help lists them; they are hidden from the root's flag list too,
	// and described in its Long text, where direct mode has its place.
	// (No back-quotes in flag usages: pflag shows a back-quoted word as
	// the flag's value name, as in "--ip hpt serve".)
	root.Flags().StringVar(&target, "target", "", "direct mode: provision this target (its key from the client keystore)")
	root.Flags().StringVar(&ip, "ip", "", "direct mode: address of the target's hpt serve")
	root.Flags().IntVar(&port, "port", agent.DefaultPort, "direct mode: port of the target's hpt serve")
	root.Flags().BoolVar(&dryRun, "dry-run", false, "direct mode: report what would change, change nothing")
	for _, name := range []string{"target", "ip", "port", "dry-run"} {
		root.Flags().MarkHidden(name)
	}
	root.RunE = func(cmd *cobra.Command, args []string) error {
		if len(args) == 0 {
			return cmd.Help()
		}
		if len(args) > 1 || !strings.HasSuffix(args[0], ".toml") {
			if hint := suggest(cmd, args[0]); hint != "" {
				return usagef("unknown command %q%s", args[0], hint)
			}
			return usagef("unknown command %q (a config to apply must end in .toml)", args[0])
		}
		switch {
		case target != "" && ip == "":
			return usagef("--target needs --ip: the address of the target's hpt serve")
		case target == "" && ip != "":
			return usagef("--ip needs --target: which key in the client keystore to expect")
		case target != "":
			return a.applyDirect(cmd.Context(), target, net.JoinHostPort(ip, strconv.Itoa(port)), args[0], dryRun, nil)
		}
		return a.applyLocal(cmd.Context(), args[0], dryRun, nil)
	}
	classifyUsage(root)
	return root
}

// setting resolves a global option: flag, then environment, then the file
// `hpt login` writes.
func (a *app) setting(flag, env, file string) string {
	if flag != "" {
		return flag
	}
	if v := a.getenv(env); v != "" {
		return v
	}
	return file
}

// cliConfig is what `hpt login` remembers, like ssh's known_hosts plus a
// default address and token.
type cliConfig struct {
	Addr       string `json:"addr"`
	ClusterKey string `json:"cluster_key"`
	Token      string `json:"token,omitempty"`
}

func (a *app) configPath() string {
	if p := a.getenv("HPT_CONFIG"); p != "" {
		return p
	}
	dir := a.getenv("XDG_CONFIG_HOME")
	if dir == "" {
		home := a.getenv("HOME")
		if home == "" {
			return ""
		}
		dir = filepath.Join(home, ".config")
	}
	return filepath.Join(dir, "hpt", "cli.json")
}

func (a *app) loadConfig() cliConfig {
	var c cliConfig
	p := a.configPath()
	if p == "" {
		return c
	}
	b, err := os.ReadFile(p)
	if err != nil {
		return c
	}
	if err := json.Unmarshal(b, &c); err != nil {
		fmt.Fprintf(a.stderr, "hpt: ignoring %s: %v\n", p, err)
	}
	return c
}

func (a *app) saveConfig(c cliConfig) (string, error) {
	p := a.configPath()
	if p == "" {
		return "", errors.New("no place for the CLI config: set HOME or HPT_CONFIG")
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return "", fmt.Errorf("save CLI config: %w", err)
	}
	b, _ := json.MarshalIndent(c, "", "  ")
	if err := os.WriteFile(p, append(b, '\n'), 0o600); err != nil {
		return "", fmt.Errorf("save CLI config: %w", err)
	}
	return p, nil
}

// client connects to the cluster named by the global options.
func (a *app) client() (*rpc.Client, error) {
	file := a.loadConfig()
	addrs := rpc.SplitAddrs(a.setting(a.addr, "HPT_ADDR", file.Addr), node.DefaultPort)
	if len(addrs) == 0 {
		return nil, usagef("no node address: set --addr or HPT_ADDR, or run `hpt login ADDR`")
	}
	c, err := rpc.Dial(rpc.ClientConfig{
		Addrs:      addrs,
		Token:      a.setting(a.token, "HPT_TOKEN", file.Token),
		ClusterKey: a.setting(a.clusterKey, "HPT_CLUSTER_KEY", file.ClusterKey),
		Consistent: !a.stale,
		Waiting:    a.waiting,
	})
	if err != nil {
		return nil, usageError{err}
	}
	return c, nil
}

// waiting tells, on stderr, that a call is still trying to connect.
func (a *app) waiting(addrs []string, waited time.Duration) {
	fmt.Fprintf(a.stderr, "hpt: no node answered in %s; still trying %s\n", waited.Round(time.Second), strings.Join(addrs, ", "))
}

// withClient runs fn with a connected client.
func (a *app) withClient(fn func(*rpc.Client) error) error {
	c, err := a.client()
	if err != nil {
		return err
	}
	defer c.Close()
	return fn(c)
}

func (a *app) json() bool { return a.output == "json" }

func (a *app) printJSON(v any) error {
	enc := json.NewEncoder(a.stdout)
	enc.SetIndent("", "  ")
	// Not for HTML: "a > b" stays readable instead of "a \u003e b".
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

// printJSONLine prints v as one line of JSON (a stream of objects).
func (a *app) printJSONLine(v any) error {
	enc := json.NewEncoder(a.stdout)
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

func (a *app) logger() *slog.Logger {
	var level slog.Level
	if err := level.UnmarshalText([]byte(a.logLevel)); err != nil {
		level = slog.LevelInfo
	}
	return slog.New(slog.NewTextHandler(a.stderr, &slog.HandlerOptions{Level: level}))
}
