package provision

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hpt-dev/hpt/provconfig"
)

// Runner runs external commands. Apply starts every external program through
// it, so tests substitute a RecordingRunner to observe the exact commands.
//
// Run returns a non-nil error only when the command could not be started, or
// was killed because its timeout expired or ctx was cancelled. A command that
// ran and exited non-zero is not an error: its status is in
// CommandResult.ExitCode.
type Runner interface {
	Run(ctx context.Context, c Command) (CommandResult, error)
}

// Command is one program invocation.
type Command struct {
	Name    string        // program: a name looked up in PATH, or an absolute path
	Args    []string      // arguments, not including Name
	Dir     string        // working directory; "" for the runner's own
	Env     []string      // KEY=value pairs added to (and overriding) the runner's environment
	User    string        // run as this user (name or uid); "" for the runner's own user
	Stdin   []byte        // standard input; nil for none
	Timeout time.Duration // kill the command (and its children) after this long; 0 for no limit
}

// String renders the command as a shell-quoted line, e.g. `useradd --shell /bin/bash alice`.
// Only Name and Args are included.
func (c Command) String() string { return provconfig.CommandLine(c.Name, c.Args...) }

// CommandResult is what a command left behind.
type CommandResult struct {
	Stdout, Stderr []byte
	ExitCode       int // -1 when the command was killed
}

// Output is stdout followed by stderr.
func (r CommandResult) Output() string {
	if len(r.Stderr) == 0 {
		return string(r.Stdout)
	}
	if len(r.Stdout) == 0 {
		return string(r.Stderr)
	}
	out := string(r.Stdout)
	if !strings.HasSuffix(out, "\n") {
		out += "\n"
	}
	return out + string(r.Stderr)
}

// MaxCommandOutput is how much of each of stdout and stderr ExecRunner keeps;
// beyond it the middle is dropped and replaced by a marker.
const MaxCommandOutput = 1 << 20

// killGrace is how long ExecRunner waits for output pipes to close after the
// process it started has exited or been killed (a daemonised grandchild may
// hold them open).
const killGrace = 5 * time.Second

// ExecRunner is the real Runner: it starts processes with os/exec. Each
// command runs in its own process group so that a timeout kills its children
// too. Running as another user (Command.User) needs root.
type ExecRunner struct{}

// Run implements Runner.
func (ExecRunner) Run(ctx context.Context, c Command) (CommandResult, error) {
	if c.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.Timeout)
		defer cancel()
	}
	cmd := exec.CommandContext(ctx, c.Name, c.Args...)
	cmd.Dir = c.Dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error {
		// Kill the whole process group: a shell's children must not outlive it.
		return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	cmd.WaitDelay = killGrace
	env := os.Environ()
	if c.User != "" {
		cred, userEnv, err := credentialFor(c.User)
		if err != nil {
			return CommandResult{ExitCode: -1}, err
		}
		cmd.SysProcAttr.Credential = cred
		env = append(env, userEnv...)
	}
	cmd.Env = append(env, c.Env...)
	if c.Stdin != nil {
		cmd.Stdin = bytes.NewReader(c.Stdin)
	}
	stdout := &cappedBuffer{max: MaxCommandOutput}
	stderr := &cappedBuffer{max: MaxCommandOutput}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	err := cmd.Run()
	res := CommandResult{Stdout: stdout.Bytes(), Stderr: stderr.Bytes()}
	if cmd.ProcessState != nil {
		res.ExitCode = cmd.ProcessState.ExitCode()
	} else {
		res.ExitCode = -1
	}
	if ctxErr := ctx.Err(); ctxErr != nil {
		if errors.Is(ctxErr, context.DeadlineExceeded) && c.Timeout > 0 {
			return res, fmt.Errorf("%s: timed out after %s", c.Name, c.Timeout)
		}
		return res, fmt.Errorf("%s: %w", c.Name, ctxErr)
	}
	var exitErr *exec.ExitError
	if err != nil && !errors.As(err, &exitErr) {
		if errors.Is(err, exec.ErrWaitDelay) {
			// The process exited; something it started kept its output open.
			return res, nil
		}
		return res, err
	}
	return res, nil
}

// credentialFor resolves a user name or uid to the credential a process
// should run with, and the HOME/USER/LOGNAME it should see.
func credentialFor(name string) (*syscall.Credential, []string, error) {
	u, err := user.Lookup(name)
	if err != nil {
		if _, numErr := strconv.Atoi(name); numErr == nil {
			u, err = user.LookupId(name)
		}
		if err != nil {
			return nil, nil, fmt.Errorf("run as user %q: %w", name, err)
		}
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return nil, nil, fmt.Errorf("run as user %q: uid %q: %w", name, u.Uid, err)
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return nil, nil, fmt.Errorf("run as user %q: gid %q: %w", name, u.Gid, err)
	}
	env := []string{"HOME=" + u.HomeDir, "USER=" + u.Username, "LOGNAME=" + u.Username}
	if uint64(os.Geteuid()) == uid {
		return nil, env, nil // already that user; nothing to switch
	}
	var groups []uint32
	if ids, err := u.GroupIds(); err == nil {
		for _, g := range ids {
			if n, err := strconv.ParseUint(g, 10, 32); err == nil {
				groups = append(groups, uint32(n))
			}
		}
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: groups}, env, nil
}

// cappedBuffer keeps the first and last max/2 bytes written to it.
type cappedBuffer struct {
	max     int
	head    []byte
	tail    []byte // ring of the most recent bytes once head is full
	dropped int64
}

func (b *cappedBuffer) Write(p []byte) (int, error) {
	n := len(p)
	half := b.max / 2
	if room := half - len(b.head); room > 0 {
		k := min(room, len(p))
		b.head = append(b.head, p[:k]...)
		p = p[k:]
	}
	if len(p) == 0 {
		return n, nil
	}
	b.tail = append(b.tail, p...)
	if over := len(b.tail) - (b.max - half); over > 0 {
		b.dropped += int64(over)
		b.tail = append(b.tail[:0], b.tail[over:]...)
	}
	return n, nil
}

func (b *cappedBuffer) Bytes() []byte {
	if b.dropped == 0 {
		return append(append([]byte(nil), b.head...), b.tail...)
	}
	marker := fmt.Sprintf("\n… [%d bytes omitted] …\n", b.dropped)
	out := make([]byte, 0, len(b.head)+len(marker)+len(b.tail))
	out = append(out, b.head...)
	out = append(out, marker...)
	return append(out, b.tail...)
}

// capString shortens s to at most max bytes, keeping its head and tail.
func capString(s string, max int) string {
	if len(s) <= max {
		return s
	}
	b := &cappedBuffer{max: max}
	b.Write([]byte(s))
	return string(b.Bytes())
}

// RecordingRunner records every command it is asked to run and answers from
// Handler, without starting anything. It is safe for concurrent use. A nil
// Handler answers every command with success and no output.
type RecordingRunner struct {
	Handler func(Command) (CommandResult, error)

	mu       sync.Mutex
	commands []Command
}

// Run implements Runner.
func (r *RecordingRunner) Run(ctx context.Context, c Command) (CommandResult, error) {
	r.mu.Lock()
	r.commands = append(r.commands, c)
	r.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return CommandResult{ExitCode: -1}, err
	}
	if r.Handler == nil {
		return CommandResult{}, nil
	}
	return r.Handler(c)
}

// Commands returns the commands run so far, in order.
func (r *RecordingRunner) Commands() []Command {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Command(nil), r.commands...)
}

// Lines returns the commands run so far as Command.String lines.
func (r *RecordingRunner) Lines() []string {
	cmds := r.Commands()
	out := make([]string, len(cmds))
	for i, c := range cmds {
		out[i] = c.String()
	}
	return out
}

// Reset forgets the recorded commands.
func (r *RecordingRunner) Reset() {
	r.mu.Lock()
	r.commands = nil
	r.mu.Unlock()
}
