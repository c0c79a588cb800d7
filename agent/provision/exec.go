package provision

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/hpt-dev/hpt/provconfig"
)

// Shell runs scripts and the unless/onlyif guards.
const Shell = "/bin/sh"

// An exec runs unless a guard says not to: creates names an existing path,
// unless exits 0, or onlyif exits non-zero. A guard that stops it leaves the
// outcome ok (the state it guards is already there), with the reason in
// Output. An exec that runs is "changed"; a non-zero exit is "failed".
func (b execBlock) apply(r *run) blockOutcome {
	var o blockOutcome
	base := Command{User: b.User, Dir: b.Pwd, Env: b.Env, Timeout: b.Timeout}
	if b.Creates != "" {
		_, err := os.Lstat(b.Creates)
		if err == nil {
			o.output = "not run: " + b.Creates + " exists (creates)"
			return o
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return o.fail("creates: %v", err)
		}
	}
	if r.dry && (b.Unless != "" || b.OnlyIf != "") {
		// An earlier block may create what the guards need; they cannot run yet.
		if why := b.notReady(); why != "" {
			o.change("command", "", b.shown(r)+" (guards not run in this dry run: "+why+")")
			return o
		}
	}
	if b.Unless != "" {
		res, err := r.exec(shellCommand(base, b.Unless))
		if err != nil {
			return o.fail("unless: %v", err)
		}
		if res.ExitCode == 0 {
			o.output = "not run: unless command exited 0"
			return o
		}
	}
	if b.OnlyIf != "" {
		res, err := r.exec(shellCommand(base, b.OnlyIf))
		if err != nil {
			return o.fail("onlyif: %v", err)
		}
		if res.ExitCode != 0 {
			o.output = fmt.Sprintf("not run: onlyif command exited %d", res.ExitCode)
			return o
		}
	}
	cmd := base
	var shown string
	if b.Cmd != "" {
		cmd.Name, cmd.Args = b.Cmd, b.Args
		shown = cmd.String()
	} else {
		script, err := b.RenderScript(r.data)
		if err != nil {
			return o.fail("script template: %v", err)
		}
		shown = describeScript(script)
		if !strings.HasPrefix(script, "#!") {
			cmd.Name, cmd.Args = Shell, []string{"-c", script}
		} else if !r.dry {
			// The kernel honours the #! line only when the script is a file.
			path, cleanup, err := writeScript(script, b.User)
			if err != nil {
				return o.fail("script: %v", err)
			}
			defer cleanup()
			cmd.Name = path
		}
	}
	o.change("command", "", shown)
	if r.dry {
		return o
	}
	res, err := r.exec(cmd)
	o.output = res.Output()
	if err != nil {
		return o.fail("%v", err)
	}
	if res.ExitCode != 0 {
		return o.fail("exit status %d", res.ExitCode)
	}
	return o
}

// notReady says why the block's guards cannot run yet: its pwd or user
// does not exist (an earlier block may create it).
func (b execBlock) notReady() string {
	if b.Pwd != "" {
		if _, err := os.Stat(b.Pwd); errors.Is(err, fs.ErrNotExist) {
			return "pwd " + b.Pwd + " does not exist yet"
		}
	}
	if b.User != "" {
		if _, _, err := credentialFor(b.User); err != nil {
			return "user " + b.User + " does not exist yet"
		}
	}
	return ""
}

// shown is how the command appears in changes.
func (b execBlock) shown(r *run) string {
	if b.Cmd != "" {
		return Command{Name: b.Cmd, Args: b.Args}.String()
	}
	script, err := b.RenderScript(r.data)
	if err != nil {
		return describeScript(b.Script)
	}
	return describeScript(script)
}

func shellCommand(base Command, script string) Command {
	base.Name, base.Args = Shell, []string{"-c", script}
	return base
}

// describeScript is how a script appears in a change: its first line, and
// how many more there are.
func describeScript(s string) string {
	lines := splitNonEmpty(s)
	switch len(lines) {
	case 0:
		return "(empty script)"
	case 1:
		return provconfig.FirstLine(lines[0], 200)
	}
	first := lines[0]
	if strings.HasPrefix(first, "#!") && len(lines) > 1 {
		first = lines[1]
	}
	return fmt.Sprintf("%s (script, %d lines)", provconfig.FirstLine(first, 200), len(lines))
}

// writeScript writes a #! script to a private temporary directory, readable
// by the user it will run as.
func writeScript(script, runAs string) (string, func(), error) {
	dir, err := os.MkdirTemp("", "hpt-exec-*")
	if err != nil {
		return "", nil, err
	}
	cleanup := func() { os.RemoveAll(dir) }
	path := filepath.Join(dir, "script")
	if err := os.WriteFile(path, []byte(script), 0o700); err != nil {
		cleanup()
		return "", nil, err
	}
	if runAs != "" {
		uid, gid := -1, -1
		if cred, _, err := credentialFor(runAs); err != nil {
			cleanup()
			return "", nil, err
		} else if cred != nil {
			uid, gid = int(cred.Uid), int(cred.Gid)
		}
		if uid >= 0 {
			for _, p := range []string{dir, path} {
				if err := os.Chown(p, uid, gid); err != nil {
					cleanup()
					return "", nil, err
				}
			}
		}
	}
	return path, cleanup, nil
}

func splitNonEmpty(s string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return out
}
