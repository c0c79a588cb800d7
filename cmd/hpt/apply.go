package main

import (
	"context"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/hpt-dev/hpt/agent/provision"
	"github.com/hpt-dev/hpt/provconfig"
)

func (a *app) applyCommand() *cobra.Command {
	var dryRun bool
	var vars []string
	cmd := &cobra.Command{
		Use:   "apply FILE.toml",
		Short: "Provision this host from a TOML config",
		Long: `Validates the whole config, then applies its blocks in file order and
reports each one (ok, changed, failed, skipped) as it finishes. Exit code 1
when any block failed. See docs/provisioning.md.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			vs, err := parseVars(vars)
			if err != nil {
				return err
			}
			return a.applyLocal(cmd.Context(), args[0], dryRun, vs)
		},
	}
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "report what would change, change nothing")
	cmd.Flags().StringArrayVar(&vars, "vars", nil, "template variables k=v (repeat or comma-separate)")
	return cmd
}

// parseVars parses k=v pairs given as repeated or comma-separated flags.
func parseVars(list []string) (map[string]string, error) {
	out := map[string]string{}
	for _, item := range list {
		for _, kv := range splitList(item) {
			k, v, ok := strings.Cut(kv, "=")
			if !ok || k == "" {
				return nil, usagef("%q: want key=value", kv)
			}
			out[k] = v
		}
	}
	if err := provconfig.CheckVars(out); err != nil {
		return nil, usagef("--vars: %v", err)
	}
	return out, nil
}

// applyLocal runs the provisioning engine on this host.
func (a *app) applyLocal(ctx context.Context, path string, dryRun bool, vars map[string]string) error {
	_, cfg, err := provconfig.Load(path)
	if err != nil {
		return err
	}
	host, _ := os.Hostname()
	opts := provision.Options{DryRun: dryRun, Facts: provconfig.Facts{Name: host}, Vars: vars}
	if !a.json() {
		if dryRun {
			fmt.Fprintln(a.stdout, "DRY RUN: nothing is changed; \"changed\" means \"would change\".")
		}
		opts.OnResult = func(b provision.BlockResult) { provision.WriteBlockText(a.stdout, b) }
	}
	rep, err := provision.Apply(ctx, cfg, opts)
	if err != nil {
		return err
	}
	return a.finishReport(rep)
}

// finishReport prints a run's totals (or the whole report as JSON) and sets
// the exit code: 1 when any block failed.
func (a *app) finishReport(rep *provision.Report) error {
	if a.json() {
		if err := a.printJSON(rep); err != nil {
			return err
		}
	} else {
		t := rep.Totals
		fmt.Fprintf(a.stdout, "\nok=%d changed=%d failed=%d skipped=%d\n", t.OK, t.Changed, t.Failed, t.Skipped)
	}
	if rep.Failed() {
		var failed []string
		for _, b := range rep.Blocks {
			if b.Outcome == provision.OutcomeFailed {
				failed = append(failed, fmt.Sprintf("%s %q: %s", b.Kind, b.Name, b.Error))
			}
		}
		return exitError{code: exitFailure, err: fmt.Errorf("%s of %d failed: %s", plural(rep.Totals.Failed, "block"), len(rep.Blocks), strings.Join(failed, "; "))}
	}
	return nil
}
