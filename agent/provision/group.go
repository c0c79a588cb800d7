package provision

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/hpt-dev/hpt/provconfig"
)

// lookupGroup asks the group database (getent) for name and returns its gid.
func (r *run) lookupGroup(name string) (int, bool, error) {
	res, err := r.exec(Command{Name: "getent", Args: []string{"group", name}})
	if err != nil {
		return 0, false, fmt.Errorf("getent group %s: %w", name, err)
	}
	if res.ExitCode == 2 {
		return 0, false, nil
	}
	if res.ExitCode != 0 {
		return 0, false, &CommandError{Command: "getent group " + name, ExitCode: res.ExitCode, Output: res.Output()}
	}
	f := strings.Split(strings.TrimSpace(firstRawLine(res.Stdout)), ":")
	if len(f) != 4 {
		return 0, false, fmt.Errorf("getent group %s: unexpected output %q", name, provconfig.FirstLine(string(res.Stdout), 80))
	}
	gid, err := strconv.Atoi(f[2])
	if err != nil {
		return 0, false, fmt.Errorf("getent group %s: bad gid %q", name, f[2])
	}
	return gid, true, nil
}

// sudoersFile is the drop-in for a group. sudo skips drop-ins whose names
// contain a dot, so dots become underscores.
func sudoersFile(dir, group string) string {
	return filepath.Join(dir, strings.ReplaceAll(group, ".", "_"))
}

func sudoersContent(group string) []byte {
	return fmt.Appendf(nil, "# Managed by hpt: passwordless sudo for group %s.\n%%%s ALL=(ALL) NOPASSWD:ALL\n", group, group)
}

// A group block creates, renumbers or deletes the group with groupadd,
// groupmod and groupdel. passwordless_sudo = true keeps a drop-in in the
// sudoers directory, checked with visudo before it is put in place (an
// invalid drop-in would break sudo for everyone); false, and absent = true,
// remove it.
func (b groupBlock) apply(r *run) blockOutcome {
	var o blockOutcome
	gid, exists, err := r.lookupGroup(b.GroupName)
	if err != nil {
		return o.fail("%v", err)
	}
	if b.Absent {
		if err := r.removeSudoers(&o, b.GroupName); err != nil {
			return o.fail("%v", err)
		}
		if exists {
			o.change("group", "present", "absent")
			if !r.dry {
				if _, err := r.must(Command{Name: "groupdel", Args: []string{b.GroupName}}); err != nil {
					return o.fail("%v", err)
				}
			}
		}
		return o
	}
	switch {
	case !exists:
		o.change("group", "absent", "present")
		args := []string{}
		if b.GID != nil {
			args = append(args, "--gid", strconv.Itoa(*b.GID))
			o.change("gid", "", strconv.Itoa(*b.GID))
		}
		if !r.dry {
			if _, err := r.must(Command{Name: "groupadd", Args: append(args, b.GroupName)}); err != nil {
				return o.fail("%v", err)
			}
		}
	case b.GID != nil && *b.GID != gid:
		o.change("gid", strconv.Itoa(gid), strconv.Itoa(*b.GID))
		if !r.dry {
			if _, err := r.must(Command{Name: "groupmod", Args: []string{"--gid", strconv.Itoa(*b.GID), b.GroupName}}); err != nil {
				return o.fail("%v", err)
			}
		}
	}
	if b.PasswordlessSudo != nil {
		var err error
		if *b.PasswordlessSudo {
			err = r.ensureSudoers(&o, b.GroupName)
		} else {
			err = r.removeSudoers(&o, b.GroupName)
		}
		if err != nil {
			return o.fail("%v", err)
		}
	}
	return o
}

func (r *run) ensureSudoers(o *blockOutcome, group string) error {
	path := sudoersFile(r.opts.SudoersDir, group)
	want := sudoersContent(group)
	old, err := os.ReadFile(path)
	exists := err == nil
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if exists && bytes.Equal(old, want) {
		st, err := os.Stat(path)
		if err != nil {
			return err
		}
		if st.Mode().Perm() != 0o440 {
			o.change("sudoers perms", fmt.Sprintf("%04o", st.Mode().Perm()), "0440")
			if !r.dry {
				return os.Chmod(path, 0o440)
			}
		}
		return nil
	}
	c := Change{Field: "sudoers", Old: "absent", New: path}
	if exists {
		c.Old = path + " (other content)"
	}
	c.Diff = unifiedDiff(path, old, want)
	o.changes = append(o.changes, c)
	if r.dry {
		return r.precondition(o, r.checkSudoers(want))
	}
	if err := r.sudoersDirExists(); err != nil {
		return err
	}
	// The temporary name holds a dot, so sudo ignores it until the rename;
	// it is fixed so that the visudo command is predictable.
	tmp := filepath.Join(r.opts.SudoersDir, "."+filepath.Base(path)+".hpt-new")
	os.Remove(tmp) // left over from an interrupted run
	if err := writeFileMode(tmp, want, 0o440); err != nil {
		return err
	}
	res, err := r.exec(Command{Name: "visudo", Args: []string{"-c", "-f", tmp}})
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("validate sudoers drop-in with visudo (is sudo installed?): %w", err)
	}
	if res.ExitCode != 0 {
		os.Remove(tmp)
		return fmt.Errorf("visudo rejected the sudoers drop-in, not installed: %s", trimOutput(res.Output()))
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}

// checkSudoers is the dry run's look at what the real run needs to install
// the drop-in: the sudoers directory, and a visudo that accepts it (given
// on stdin, so nothing is written).
func (r *run) checkSudoers(want []byte) error {
	if err := r.sudoersDirExists(); err != nil {
		return err
	}
	res, err := r.exec(Command{Name: "visudo", Args: []string{"-c", "-f", "-"}, Stdin: want})
	if err != nil {
		return fmt.Errorf("validate sudoers drop-in with visudo (is sudo installed?): %w", err)
	}
	if res.ExitCode != 0 {
		return fmt.Errorf("visudo rejects the sudoers drop-in: %s", trimOutput(res.Output()))
	}
	return nil
}

func (r *run) sudoersDirExists() error {
	if st, err := os.Stat(r.opts.SudoersDir); err != nil || !st.IsDir() {
		return fmt.Errorf("sudoers directory %s is missing (is sudo installed?)", r.opts.SudoersDir)
	}
	return nil
}

func (r *run) removeSudoers(o *blockOutcome, group string) error {
	path := sudoersFile(r.opts.SudoersDir, group)
	if _, err := os.Lstat(path); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return err
	}
	o.change("sudoers", path, "absent")
	if r.dry {
		return nil
	}
	return os.Remove(path)
}

// writeFileMode creates path with exactly mode (no umask), owned by root
// when running as root.
func writeFileMode(path string, data []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(path)
		return err
	}
	if os.Geteuid() == 0 {
		if err := f.Chown(0, 0); err != nil {
			f.Close()
			os.Remove(path)
			return err
		}
	}
	if err := f.Chmod(mode); err != nil {
		f.Close()
		os.Remove(path)
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(path)
		return err
	}
	return f.Close()
}
