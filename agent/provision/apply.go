package provision

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"strconv"
	"time"

	"github.com/hpt-dev/hpt/provconfig"
)

// Outcome is what happened to one block.
type Outcome string

const (
	OutcomeOK      Outcome = "ok"      // already in the desired state (or a guard said not to run)
	OutcomeChanged Outcome = "changed" // changed something (in a dry run: would change)
	OutcomeFailed  Outcome = "failed"  // an error; Changes lists what the block changed or was changing when it failed
	OutcomeSkipped Outcome = "skipped" // not run: an earlier block failed with failhard, or the run was cancelled
)

// Change is one difference between the host and the config. For file content
// Old and New are summaries (size and checksum) and Diff is a unified diff.
type Change struct {
	Field string `json:"field"`
	Old   string `json:"old"`
	New   string `json:"new"`
	Diff  string `json:"diff,omitempty"`
}

// BlockResult reports one block.
type BlockResult struct {
	Kind       string   `json:"kind"`
	Name       string   `json:"name"`
	Outcome    Outcome  `json:"outcome"`
	Changes    []Change `json:"changes"`
	Output     string   `json:"output"`
	Error      string   `json:"error"`
	DurationMS int64    `json:"duration_ms"`
}

// Totals counts blocks by outcome.
type Totals struct {
	OK      int `json:"ok"`
	Changed int `json:"changed"`
	Failed  int `json:"failed"`
	Skipped int `json:"skipped"`
}

// Report is the result of one Apply: every block in file order.
type Report struct {
	Blocks []BlockResult `json:"blocks"`
	Totals Totals        `json:"totals"`
	DryRun bool          `json:"dry_run"`
}

// Failed reports whether any block failed; the CLI exits 1 when it did.
func (r *Report) Failed() bool { return r.Totals.Failed > 0 }

// FailureSummary says in one line what failed among blocks: the first
// failed block's kind and name with the first line of its error, and how
// many more failed; empty when none did. It is a target's error in a job,
// which the live progress shows, where a count of failed blocks would say
// nothing the recap table does not.
func FailureSummary(blocks []BlockResult) string {
	var first string
	failed := 0
	for _, b := range blocks {
		if b.Outcome != OutcomeFailed {
			continue
		}
		if failed++; failed == 1 {
			first = b.Kind + " " + strconv.Quote(b.Name) + ": " + provconfig.FirstLine(b.Error, 200)
		}
	}
	if failed > 1 {
		return fmt.Sprintf("%s (and %d more)", first, failed-1)
	}
	return first
}

func (r *Report) add(res BlockResult) {
	r.Blocks = append(r.Blocks, res)
	switch res.Outcome {
	case OutcomeOK:
		r.Totals.OK++
	case OutcomeChanged:
		r.Totals.Changed++
	case OutcomeFailed:
		r.Totals.Failed++
	case OutcomeSkipped:
		r.Totals.Skipped++
	}
}

// Options control one Apply. The zero value applies for real on this host.
type Options struct {
	DryRun bool              // compute and report changes, make none
	Facts  provconfig.Facts  // .Target in templates
	Vars   map[string]string // .Vars in templates; override the config's [vars]
	Runner Runner            // nil: ExecRunner

	// OnResult, if set, is called with each block's result as soon as the
	// block finishes (the agent streams these), from the goroutine running
	// Apply, before the next block starts.
	OnResult func(BlockResult)

	// System locations; the zero values are the real ones. Tests point them
	// into temporary directories.
	SudoersDir     string // drop-ins for passwordless_sudo; default /etc/sudoers.d
	HomeRoot       string // prefixed to home directories from the passwd database when writing authorized_keys; default ""
	PackageManager string // "apt", "dnf" or "yum"; "" detects from /etc/os-release and PATH
}

// DefaultSudoersDir is where passwordless_sudo drop-ins go.
const DefaultSudoersDir = "/etc/sudoers.d"

// MaxBlockOutput bounds BlockResult.Output; longer output keeps its head and tail.
const MaxBlockOutput = 64 << 10

// Apply brings this host to the state cfg describes, block by block in file
// order, and reports every block. A failed block does not stop the run unless
// cfg.FailHard is set; then the remaining blocks are reported skipped. If ctx
// is cancelled during the run the block in progress fails and the rest are
// skipped. The error is non-nil only when the run could not start (nil cfg,
// ctx already done); block failures are in the Report.
func Apply(ctx context.Context, cfg *provconfig.Config, opts Options) (*Report, error) {
	if cfg == nil {
		return nil, errors.New("apply: nil config")
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("apply: %w", err)
	}
	r := newRun(ctx, cfg, opts)
	rep := &Report{DryRun: opts.DryRun, Blocks: make([]BlockResult, 0, len(cfg.Blocks))}
	var stop string
	for _, b := range cfg.Blocks {
		var res BlockResult
		switch {
		case stop != "":
			res = skippedResult(b, stop)
		case ctx.Err() != nil:
			res = skippedResult(b, fmt.Sprintf("not run: run cancelled (%v)", ctx.Err()))
		default:
			res = r.applyBlock(b)
			r.changedBefore = r.changedBefore || res.Outcome == OutcomeChanged
			if res.Outcome == OutcomeFailed && cfg.FailHard {
				stop = fmt.Sprintf("not run: %s %q failed and failhard = true", b.Kind(), b.Name())
			}
		}
		rep.add(res)
		if opts.OnResult != nil {
			opts.OnResult(res)
		}
	}
	return rep, nil
}

func skippedResult(b provconfig.Block, why string) BlockResult {
	return BlockResult{Kind: b.Kind(), Name: b.Name(), Outcome: OutcomeSkipped, Changes: []Change{}, Error: why}
}

// The parsed blocks belong to provconfig, so each kind's engine is a method
// of a wrapper declared here, with the block's fields at hand.
type (
	fileBlock    struct{ *provconfig.FileBlock }
	execBlock    struct{ *provconfig.ExecBlock }
	packageBlock struct{ *provconfig.PackageBlock }
	userBlock    struct{ *provconfig.UserBlock }
	groupBlock   struct{ *provconfig.GroupBlock }
	serviceBlock struct{ *provconfig.ServiceBlock }
	cloneBlock   struct{ *provconfig.CloneBlock }
)

// apply runs one block's engine.
func (r *run) apply(b provconfig.Block) blockOutcome {
	switch b := b.(type) {
	case *provconfig.FileBlock:
		return fileBlock{b}.apply(r)
	case *provconfig.ExecBlock:
		return execBlock{b}.apply(r)
	case *provconfig.PackageBlock:
		return packageBlock{b}.apply(r)
	case *provconfig.UserBlock:
		return userBlock{b}.apply(r)
	case *provconfig.GroupBlock:
		return groupBlock{b}.apply(r)
	case *provconfig.ServiceBlock:
		return serviceBlock{b}.apply(r)
	case *provconfig.CloneBlock:
		return cloneBlock{b}.apply(r)
	}
	return blockOutcome{err: fmt.Errorf("internal error: no engine for %s blocks", b.Kind())}
}

// blockOutcome is what a block's apply method returns; Apply turns it into a
// BlockResult.
type blockOutcome struct {
	changes []Change
	output  string
	err     error
}

func (o *blockOutcome) change(field, old, new string) {
	o.changes = append(o.changes, Change{Field: field, Old: old, New: new})
}

func (o blockOutcome) fail(format string, args ...any) blockOutcome {
	o.err = fmt.Errorf(format, args...)
	return o
}

func (r *run) applyBlock(b provconfig.Block) (res BlockResult) {
	start := time.Now()
	res = BlockResult{Kind: b.Kind(), Name: b.Name()}
	defer func() {
		if p := recover(); p != nil {
			res.Outcome = OutcomeFailed
			res.Error = fmt.Sprintf("internal error: %v\n%s", p, debug.Stack())
		}
		if res.Changes == nil {
			res.Changes = []Change{}
		}
		res.DurationMS = time.Since(start).Milliseconds()
	}()
	o := r.apply(b)
	res.Changes = o.changes
	res.Output = capString(o.output, MaxBlockOutput)
	switch {
	case o.err != nil:
		res.Outcome = OutcomeFailed
		res.Error = o.err.Error()
	case len(o.changes) > 0:
		res.Outcome = OutcomeChanged
	default:
		res.Outcome = OutcomeOK
	}
	return res
}

// run is the state of one Apply.
type run struct {
	ctx    context.Context
	opts   Options
	dry    bool
	runner Runner
	data   provconfig.TemplateData

	// changedBefore: an earlier block changed the host (in a dry run:
	// would have), so a precondition that fails now may hold by the time
	// the real run gets here.
	changedBefore bool

	pm    string // detected package manager, once asked for
	pmErr error
}

func newRun(ctx context.Context, cfg *provconfig.Config, opts Options) *run {
	if opts.Runner == nil {
		opts.Runner = ExecRunner{}
	}
	if opts.SudoersDir == "" {
		opts.SudoersDir = DefaultSudoersDir
	}
	return &run{
		ctx:    ctx,
		opts:   opts,
		dry:    opts.DryRun,
		runner: opts.Runner,
		data:   cfg.TemplateData(opts.Facts, opts.Vars),
	}
}

// precondition turns what a dry run found the real run would fail on (a
// missing visudo, a unit that does not exist) into the block's failure, as
// the real run would report it. When an earlier block would change the
// host, that change may be what makes it hold (a package that installs
// sudo or the unit), so then it is only noted among the changes.
func (r *run) precondition(o *blockOutcome, err error) error {
	if err == nil || !r.dry {
		return err
	}
	if !r.changedBefore {
		return fmt.Errorf("the real run would fail: %w", err)
	}
	o.change("precondition", "", fmt.Sprintf("not met now, an earlier block may see to it: %v", err))
	return nil
}

// exec runs c and returns its result; a non-zero exit is not an error here.
func (r *run) exec(c Command) (CommandResult, error) {
	return r.runner.Run(r.ctx, c)
}

// must runs c and turns a non-zero exit into an error carrying its output.
func (r *run) must(c Command) (CommandResult, error) {
	res, err := r.runner.Run(r.ctx, c)
	if err != nil {
		return res, fmt.Errorf("%s: %w", c.String(), err)
	}
	if res.ExitCode != 0 {
		return res, &CommandError{Command: c.String(), ExitCode: res.ExitCode, Output: capString(res.Output(), 4096)}
	}
	return res, nil
}

// CommandError is a command that exited non-zero.
type CommandError struct {
	Command  string
	ExitCode int
	Output   string
}

func (e *CommandError) Error() string {
	msg := fmt.Sprintf("%s: exit status %d", provconfig.FirstLine(e.Command, 200), e.ExitCode)
	if out := trimOutput(e.Output); out != "" {
		msg += ": " + out
	}
	return msg
}

// trimOutput keeps the last lines of a command's output, for error messages.
func trimOutput(s string) string {
	const maxLines = 5
	lines := splitNonEmpty(s)
	if len(lines) > maxLines {
		lines = lines[len(lines)-maxLines:]
	}
	out := ""
	for i, l := range lines {
		if i > 0 {
			out += "; "
		}
		out += l
	}
	return out
}
