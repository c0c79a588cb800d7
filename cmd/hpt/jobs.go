package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/hpt-dev/hpt/agent"
	"github.com/hpt-dev/hpt/agent/provision"
	"github.com/hpt-dev/hpt/events"
	"github.com/hpt-dev/hpt/provconfig"
	"github.com/hpt-dev/hpt/rpc"
)

// jobTargetJSON and jobJSON are the stable JSON of job run/status.
type jobTargetJSON struct {
	Target   string                  `json:"target"`
	Status   string                  `json:"status"`
	Node     string                  `json:"node,omitempty"`
	Error    string                  `json:"error,omitempty"`
	Started  *time.Time              `json:"started,omitempty"`
	Finished *time.Time              `json:"finished,omitempty"`
	Blocks   []provision.BlockResult `json:"blocks"`
	// Waiting is set while the target is in flight and its agent is not
	// connected ("disconnected since …", "never connected");
	// DisconnectedSince is then when its connection was lost.
	Waiting           string     `json:"waiting,omitempty"`
	DisconnectedSince *time.Time `json:"disconnected_since,omitempty"`
}

type jobJSON struct {
	JobID       string            `json:"job_id"`
	Name        string            `json:"name"`
	Status      string            `json:"status"`
	SubmittedBy string            `json:"submitted_by"`
	Submitted   time.Time         `json:"submitted"`
	Finished    *time.Time        `json:"finished,omitempty"`
	DryRun      bool              `json:"dry_run"`
	BatchSize   uint32            `json:"batch_size"`
	MaxFailures int32             `json:"max_failures"`
	Targets     []jobTargetJSON   `json:"targets,omitempty"`
	Totals      map[string]uint32 `json:"totals"`
}

// jobStatus and targetStatus read a status, by its name from a node of a
// build before the enums.
func jobStatus(info *rpc.JobInfo) events.JobStatus {
	return events.JobStatusOf(info.GetJobStatus(), info.GetStatus())
}

func targetStatus(t *rpc.JobTargetInfo) events.TargetStatus {
	return events.TargetStatusOf(t.GetTargetStatus(), t.GetStatus())
}

// count is how many of a job's targets are in status s.
func count(info *rpc.JobInfo, s events.TargetStatus) uint32 { return info.GetCounts()[s.Name()] }

func toJobJSON(info *rpc.JobInfo) jobJSON {
	out := jobJSON{
		JobID: info.GetJobId(), Name: info.GetName(), Status: jobStatus(info).Name(), SubmittedBy: info.GetSubmittedBy(),
		Submitted: time.Unix(0, info.GetSubmittedUnixNano()).UTC(), Finished: timePtr(info.GetFinishedUnixNano()),
		DryRun: info.GetDryRun(), BatchSize: info.GetBatchSize(), MaxFailures: info.GetMaxFailures(), Totals: info.GetCounts(),
	}
	if out.Totals == nil {
		out.Totals = map[string]uint32{}
	}
	for _, t := range info.GetTargets() {
		jt := jobTargetJSON{Target: t.GetTarget(), Status: t.GetStatus(), Node: t.GetNode(), Error: t.GetError(),
			Started: timePtr(t.GetStartedUnixNano()), Finished: timePtr(t.GetFinishedUnixNano()), Blocks: []provision.BlockResult{},
			Waiting: waitingFor(t), DisconnectedSince: timePtr(t.GetDisconnectedSinceUnixNano())}
		for _, b := range t.GetBlocks() {
			jt.Blocks = append(jt.Blocks, agent.BlockFromEvent(b))
		}
		out.Targets = append(out.Targets, jt)
	}
	return out
}

// jobExit is the exit code a finished job's outcome calls for: 1 if any
// target failed (or was refused), else 3 if any was unreachable.
func jobExit(info *rpc.JobInfo) error {
	failed := count(info, events.TargetStatus_TARGET_STATUS_FAILED) + count(info, events.TargetStatus_TARGET_STATUS_REFUSED)
	unreachable := count(info, events.TargetStatus_TARGET_STATUS_UNREACHABLE)
	switch {
	case failed > 0:
		return exitError{code: exitFailure, err: fmt.Errorf("job %s: %s failed", info.GetJobId(), plural(int(failed), "target"))}
	case unreachable > 0:
		return exitError{code: exitUnreachable, err: fmt.Errorf("job %s: %s unreachable", info.GetJobId(), plural(int(unreachable), "target"))}
	}
	return nil
}

// plural is "1 target", "2 targets".
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

// dryRunNote is what marks a dry run's output, wherever it is shown.
const dryRunNote = `DRY RUN: nothing was changed; "changed" means "would change"`

func (a *app) jobCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "job", Short: "Run provisioning jobs on targets in the cluster"}
	cmd.AddCommand(a.jobRunCommand(), a.jobStatusCommand(), a.jobListCommand(), a.jobLogsCommand(), a.jobCancelCommand())
	return cmd
}

func (a *app) jobRunCommand() *cobra.Command {
	var (
		glob, selector string
		vars           []string
		secretVars     []string
		batch          uint32
		maxFailures    int32
		timeout        time.Duration
		connectTimeout time.Duration
		dryRun         bool
		detach         bool
		preview        bool
	)
	cmd := &cobra.Command{
		Use:   "run FILE.toml",
		Short: "Apply a config on the targets that match, in batches",
		Long: `Resolves the targets (--targets glob over names, --selector labels) on the
server, records the job, and shows progress per target until it ends, then
a recap (ok / changed / failed / unreachable). At most --batch targets run
at once (a sliding window); once more than --max-failures targets failed,
no new ones start. A released target whose agent is not connected waits
for it ("waiting: disconnected since …") up to --connect-timeout (default
30s), then counts as unreachable; once started, only --timeout ends it.
Exit code 0 if every target ended ok or changed, 1 if any failed, 3 if
none failed but some were unreachable (2 is for usage errors). --detach
prints the job id and returns; --preview only shows the targets.
` + "`hpt job logs JOB`" + ` shows each target's block results.

--vars and the whole config (with the files it ships) are recorded in the
job_submitted event: they stay in the log, in snapshots and in the NATS
export for good, readable by anyone with view on events. Never put a
secret there. --secret-var NAME=@FILE (or NAME=@- for standard input,
once; or NAME=env:VAR) passes a value that templates see as
{{ .Vars.NAME }} like a var, but that is never recorded: the log keeps
only the names and a keyed digest; the nodes hold the values in memory
until the job ends, the agents receive them over their streams and
redact them from every result ("[secret NAME]"). A name is either a var
or a secret var, not both. A target whose agent is connected to a node
that restarted since the submission fails ("resubmit").`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			sel, err := parseLabels("--selector", selector)
			if err != nil {
				return err
			}
			vs, err := parseVars(vars)
			if err != nil {
				return err
			}
			svs, err := a.parseSecretVars(secretVars, vs)
			if err != nil {
				return err
			}
			if timeout < 0 || maxFailures < -1 {
				return usagef("--timeout must be positive and --max-failures -1 or more")
			}
			if connectTimeout < time.Second {
				return usagef("--connect-timeout %s: at least 1s", connectTimeout)
			}
			bundle, _, err := provconfig.Load(args[0])
			if err != nil {
				return err
			}
			return a.withClient(func(c *rpc.Client) error {
				ctx := cmd.Context()
				resp, err := c.Jobs.Submit(ctx, &rpc.SubmitJobRequest{
					Name: bundle.Name, Config: bundle.Config, Files: bundle.Files, Targets: glob, Selector: sel,
					BatchSize: batch, MaxFailures: maxFailures, TimeoutSeconds: int64(timeout / time.Second),
					Vars: vs, SecretVars: svs, DryRun: dryRun, Preview: preview, ConnectTimeoutSeconds: int64((connectTimeout + time.Second - 1) / time.Second),
				})
				if err != nil {
					return err
				}
				if preview {
					if a.json() {
						return a.printJSON(map[string]any{"targets": resp.GetTargets()})
					}
					fmt.Fprintf(a.stdout, "%s: %s\n", plural(len(resp.GetTargets()), "target"), strings.Join(resp.GetTargets(), " "))
					return nil
				}
				if detach {
					if a.json() {
						return a.printJSON(map[string]any{"job_id": resp.GetJobId(), "index": resp.GetIndex(), "targets": resp.GetTargets()})
					}
					fmt.Fprintln(a.stdout, resp.GetJobId())
					return nil
				}
				if !a.json() {
					fmt.Fprintf(a.stderr, "job %s on %s (batch %d)\n", resp.GetJobId(), plural(len(resp.GetTargets()), "target"), batchOr(batch, len(resp.GetTargets())))
					if dryRun {
						fmt.Fprintln(a.stderr, dryRunNote)
					}
				}
				return a.follow(ctx, c, resp.GetJobId())
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&glob, "targets", "", "glob over target names (default: all)")
	f.StringVar(&selector, "selector", "", "labels the targets must have, k=v,...")
	f.StringArrayVar(&vars, "vars", nil, "template variables k=v (repeat or comma-separate); recorded in the log for good: no secrets")
	f.StringArrayVar(&secretVars, "secret-var", nil, "secret template variable NAME=@FILE, NAME=@- (stdin) or NAME=env:VAR, seen as {{ .Vars.NAME }}, never recorded (repeat)")
	f.Uint32Var(&batch, "batch", 0, "at most this many targets at once (0: all)")
	f.Int32Var(&maxFailures, "max-failures", -1, "stop starting targets once more than this many failed (-1: never)")
	f.DurationVar(&timeout, "timeout", 10*time.Minute, "per target: time to answer and finish before it counts as unreachable")
	f.DurationVar(&connectTimeout, "connect-timeout", 30*time.Second, "per target: time its agent may be disconnected before the target, not yet started, counts as unreachable (whole seconds, rounded up)")
	f.BoolVar(&dryRun, "dry-run", false, "report what would change, change nothing")
	f.BoolVar(&detach, "detach", false, "print the job id and return")
	f.BoolVar(&preview, "preview", false, "only show which targets match")
	return cmd
}

func batchOr(b uint32, n int) int {
	if b == 0 || int(b) > n {
		return n
	}
	return int(b)
}

// follow watches a job until it ends: a progress bar on a terminal, a line
// per target transition otherwise; then the recap.
func (a *app) follow(ctx context.Context, c *rpc.Client, id string) error {
	stream, err := c.Jobs.Watch(ctx, &rpc.GetJobRequest{JobId: id})
	if err != nil {
		return err
	}
	tty := isTerminal(a.stdout) && !a.json()
	seen := map[string]string{}
	var last *rpc.JobInfo
	for {
		info, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			if ctx.Err() != nil {
				fmt.Fprintf(a.stderr, "\nstopped watching; the job goes on: hpt job status %s\n", id)
				return exitError{code: exitFailure}
			}
			return err
		}
		last = info
		if a.json() {
			continue
		}
		if tty {
			fmt.Fprintf(a.stdout, "\r%s", progressBar(info))
			continue
		}
		for _, t := range info.GetTargets() {
			state := targetState(t)
			if seen[t.GetTarget()] != state {
				seen[t.GetTarget()] = state
				line := fmt.Sprintf("%-24s %s", t.GetTarget(), state)
				if t.GetError() != "" {
					line += ": " + t.GetError()
				}
				fmt.Fprintln(a.stdout, line)
			}
		}
	}
	if tty {
		fmt.Fprintln(a.stdout)
	}
	if last == nil {
		return fmt.Errorf("job %s: no status received", id)
	}
	// The watch carries no block results; the report fetches them.
	return a.reportJob(ctx, c, id)
}

// reportJob prints a job with its block results, as JSON or as the recap,
// and returns the exit its outcome calls for: `job run` after watching and
// `job status` end alike (SPEC section 5), so a script can check a
// detached job as it would a watched one.
func (a *app) reportJob(ctx context.Context, c *rpc.Client, id string) error {
	info, err := c.Jobs.Get(ctx, &rpc.GetJobRequest{JobId: id, Blocks: true})
	if err != nil {
		return err
	}
	if a.json() {
		if err := a.printJSON(toJobJSON(info)); err != nil {
			return err
		}
	} else {
		a.printRecap(info)
	}
	return jobExit(info)
}

// waitingFor says what a target in flight waits for, if its agent is not
// connected; empty otherwise.
func waitingFor(t *rpc.JobTargetInfo) string {
	switch {
	case !t.GetAgentDisconnected():
		return ""
	case t.GetDisconnectedSinceUnixNano() == 0:
		return "never connected"
	}
	return "disconnected since " + time.Unix(0, t.GetDisconnectedSinceUnixNano()).UTC().Format(time.RFC3339)
}

// targetState is a target's status as a person reads it: where it runs,
// or what it waits for.
func targetState(t *rpc.JobTargetInfo) string {
	status := targetStatus(t)
	st := status.Name()
	if t.GetNode() != "" && status == events.TargetStatus_TARGET_STATUS_RUNNING {
		st += " on " + t.GetNode()
	}
	if w := waitingFor(t); w != "" {
		if status == events.TargetStatus_TARGET_STATUS_DISPATCHED {
			return "waiting: " + w
		}
		st += ", waiting: " + w
	}
	return st
}

func progressBar(info *rpc.JobInfo) string {
	c := func(s events.TargetStatus) uint32 { return count(info, s) }
	total := len(info.GetTargets())
	done := 0
	for s := range events.TargetStatus_name {
		if st := events.TargetStatus(s); st.Final() {
			done += int(c(st))
		}
	}
	const width = 30
	filled := 0
	if total > 0 {
		filled = done * width / total
	}
	waiting := 0
	for _, t := range info.GetTargets() {
		if t.GetAgentDisconnected() {
			waiting++
		}
	}
	return fmt.Sprintf("[%s%s] %d/%d  running %d  waiting for agents %d  ok %d  changed %d  failed %d  unreachable %d ",
		strings.Repeat("#", filled), strings.Repeat(".", width-filled), done, total,
		c(events.TargetStatus_TARGET_STATUS_RUNNING)+c(events.TargetStatus_TARGET_STATUS_DISPATCHED)-uint32(waiting), waiting, c(events.TargetStatus_TARGET_STATUS_OK), c(events.TargetStatus_TARGET_STATUS_CHANGED), c(events.TargetStatus_TARGET_STATUS_FAILED)+c(events.TargetStatus_TARGET_STATUS_REFUSED), c(events.TargetStatus_TARGET_STATUS_UNREACHABLE))
}

// printRecap prints Ansible's play recap: per target, its blocks by
// outcome; then the targets by status, each line saying which it counts.
func (a *app) printRecap(info *rpc.JobInfo) {
	fmt.Fprintf(a.stdout, "\nRECAP job %s: %s\n", info.GetJobId(), jobStatus(info).Name())
	if info.GetDryRun() {
		fmt.Fprintln(a.stdout, dryRunNote)
	}
	fmt.Fprintln(a.stdout, "blocks per target:")
	tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TARGET\tSTATUS\tOK\tCHANGED\tFAILED\tSKIPPED\tNODE\tERROR")
	for _, t := range info.GetTargets() {
		var ok, changed, failed, skipped int
		for _, b := range t.GetBlocks() {
			switch provision.Outcome(b.GetOutcome()) {
			case provision.OutcomeOK:
				ok++
			case provision.OutcomeChanged:
				changed++
			case provision.OutcomeFailed:
				failed++
			case provision.OutcomeSkipped:
				skipped++
			}
		}
		status := targetStatus(t).Name()
		if w := waitingFor(t); w != "" {
			status += " (waiting: " + w + ")"
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%s\t%s\n", t.GetTarget(), status, ok, changed, failed, skipped, orDash(t.GetNode()), orDash(truncate(targetError(t), 60)))
	}
	tw.Flush()
	c := func(s events.TargetStatus) uint32 { return count(info, s) }
	fmt.Fprintf(a.stdout, "\ntargets: ok=%d changed=%d failed=%d unreachable=%d refused=%d skipped=%d cancelled=%d\n",
		c(events.TargetStatus_TARGET_STATUS_OK), c(events.TargetStatus_TARGET_STATUS_CHANGED), c(events.TargetStatus_TARGET_STATUS_FAILED), c(events.TargetStatus_TARGET_STATUS_UNREACHABLE), c(events.TargetStatus_TARGET_STATUS_REFUSED), c(events.TargetStatus_TARGET_STATUS_SKIPPED), c(events.TargetStatus_TARGET_STATUS_CANCELLED))
	fmt.Fprintf(a.stdout, "each target's changes, output and errors: hpt job logs %s\n", info.GetJobId())
}

// targetError is what went wrong on a target, for one table cell: the
// first failed block's own error (as agents now report it, but an agent of
// an older build reports a count of failed blocks, which the table already
// shows), else the target's error.
func targetError(t *rpc.JobTargetInfo) string {
	blocks := make([]provision.BlockResult, 0, len(t.GetBlocks()))
	for _, b := range t.GetBlocks() {
		blocks = append(blocks, agent.BlockFromEvent(b))
	}
	if s := provision.FailureSummary(blocks); s != "" {
		return s
	}
	return t.GetError()
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

func (a *app) jobStatusCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "status JOB",
		Short: "A job's state, per target",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.withClient(func(c *rpc.Client) error {
				return a.reportJob(cmd.Context(), c, args[0])
			})
		},
	}
}

func (a *app) jobListCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "Jobs, newest last",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.withClient(func(c *rpc.Client) error {
				resp, err := c.Jobs.List(cmd.Context(), &rpc.ListJobsRequest{})
				if err != nil {
					return err
				}
				out := []jobJSON{}
				for _, j := range resp.GetJobs() {
					out = append(out, toJobJSON(j))
				}
				if a.json() {
					return a.printJSON(out)
				}
				tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "JOB\tNAME\tSTATUS\tSUBMITTED\tBY\tTARGETS")
				for _, j := range out {
					st := j.Status
					if j.DryRun {
						st += " (dry run)"
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", j.JobID, j.Name, st, j.Submitted.Format(time.RFC3339), j.SubmittedBy, countsLine(j.Totals))
				}
				return tw.Flush()
			})
		},
	}
}

func countsLine(c map[string]uint32) string {
	var parts []string
	for k, v := range c {
		parts = append(parts, fmt.Sprintf("%s=%d", k, v))
	}
	sort.Strings(parts)
	return strings.Join(parts, " ")
}

func (a *app) jobLogsCommand() *cobra.Command {
	var target string
	cmd := &cobra.Command{
		Use:   "logs JOB [--target NAME]",
		Short: "Each target's block results: changes, output, errors",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.withClient(func(c *rpc.Client) error {
				info, err := c.Jobs.Get(cmd.Context(), &rpc.GetJobRequest{JobId: args[0], Blocks: true})
				if err != nil {
					return err
				}
				j := toJobJSON(info)
				var targets []jobTargetJSON
				for _, t := range j.Targets {
					if target == "" || t.Target == target {
						targets = append(targets, t)
					}
				}
				if target != "" && len(targets) == 0 {
					return fmt.Errorf("job %s has no target %q", args[0], target)
				}
				if a.json() {
					return a.printJSON(targets)
				}
				if j.DryRun {
					fmt.Fprintf(a.stdout, "job %s: %s\n", j.JobID, dryRunNote)
				}
				for _, t := range targets {
					fmt.Fprintf(a.stdout, "== %s: %s", t.Target, t.Status)
					if t.Error != "" {
						fmt.Fprintf(a.stdout, " (%s)", t.Error)
					}
					fmt.Fprintln(a.stdout)
					for _, b := range t.Blocks {
						provision.WriteBlockText(a.stdout, b)
					}
				}
				return nil
			})
		},
	}
	cmd.Flags().StringVar(&target, "target", "", "only this target")
	return cmd
}

func (a *app) jobCancelCommand() *cobra.Command {
	var reason string
	cmd := &cobra.Command{
		Use:   "cancel JOB",
		Short: "Start no more targets and stop those running",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.withClient(func(c *rpc.Client) error {
				w, err := c.Jobs.Cancel(cmd.Context(), &rpc.CancelJobRequest{JobId: args[0], Reason: reason})
				if err != nil {
					return err
				}
				return a.written(w, "cancelling job "+args[0])
			})
		},
	}
	cmd.Flags().StringVar(&reason, "reason", "", "why, for the audit log")
	return cmd
}

// targetJSON is the stable JSON of `hpt targets list` (SPEC section 10).
// Labels are the ones set at registration, which --selector matches;
// ClaimedLabels are what the agent announced, shown apart because anyone
// holding the target's keystore can announce anything.
type targetJSON struct {
	Name          string            `json:"name"`
	Labels        map[string]string `json:"labels"`
	ClaimedLabels map[string]string `json:"claimed_labels"`
	Status        string            `json:"status"`
	Node          string            `json:"node"`
	Gossip        string            `json:"gossip"`
	LastSeen      *time.Time        `json:"last_seen"`
	Fingerprint   string            `json:"fingerprint"`
}

func (a *app) targetsCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "targets", Short: "Targets registered with the cluster"}
	cmd.AddCommand(&cobra.Command{
		Use:   "list",
		Short: "Name, labels (registered; and what the agent claims), connection, gossip state, last seen",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.withClient(func(c *rpc.Client) error {
				resp, err := c.Targets.List(cmd.Context(), &rpc.ListTargetsRequest{})
				if err != nil {
					return err
				}
				out := []targetJSON{}
				for _, t := range resp.GetTargets() {
					labels := t.GetLabels()
					if labels == nil {
						labels = map[string]string{}
					}
					claimed := t.GetClaimedLabels()
					if claimed == nil {
						claimed = map[string]string{}
					}
					out = append(out, targetJSON{Name: t.GetName(), Labels: labels, ClaimedLabels: claimed, Status: t.GetStatus(), Node: t.GetNode(),
						Gossip: t.GetGossip(), LastSeen: timePtr(t.GetLastSeenUnixNano()), Fingerprint: t.GetFingerprint()})
				}
				if a.json() {
					return a.printJSON(out)
				}
				tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "NAME\tLABELS\tCLAIMED\tSTATUS\tNODE\tGOSSIP\tLAST SEEN")
				for _, t := range out {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", t.Name, orDash(events.FormatLabels(t.Labels)), orDash(events.FormatLabels(t.ClaimedLabels)), t.Status, orDash(t.Node), t.Gossip, fmtTime(t.LastSeen, "-"))
				}
				return tw.Flush()
			})
		},
	})
	return cmd
}
