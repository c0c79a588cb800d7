package provision

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"github.com/hpt-dev/hpt/provconfig"
)

// passwdEntry is a line of the passwd database.
type passwdEntry struct {
	name     string
	uid, gid int
	home     string
	shell    string
}

// lookupUser asks the passwd database (getent, so NSS sources count) for name.
func (r *run) lookupUser(name string) (passwdEntry, bool, error) {
	res, err := r.exec(Command{Name: "getent", Args: []string{"passwd", name}})
	if err != nil {
		return passwdEntry{}, false, fmt.Errorf("getent passwd %s: %w", name, err)
	}
	if res.ExitCode == 2 { // not found
		return passwdEntry{}, false, nil
	}
	if res.ExitCode != 0 {
		return passwdEntry{}, false, &CommandError{Command: "getent passwd " + name, ExitCode: res.ExitCode, Output: res.Output()}
	}
	f := strings.Split(strings.TrimSpace(firstRawLine(res.Stdout)), ":")
	if len(f) != 7 {
		return passwdEntry{}, false, fmt.Errorf("getent passwd %s: unexpected output %q", name, provconfig.FirstLine(string(res.Stdout), 80))
	}
	uid, err1 := strconv.Atoi(f[2])
	gid, err2 := strconv.Atoi(f[3])
	if err1 != nil || err2 != nil {
		return passwdEntry{}, false, fmt.Errorf("getent passwd %s: bad uid/gid in %q", name, provconfig.FirstLine(string(res.Stdout), 80))
	}
	return passwdEntry{name: f[0], uid: uid, gid: gid, home: f[5], shell: f[6]}, true, nil
}

// userGroups returns the names of every group name is in.
func (r *run) userGroups(name string) ([]string, error) {
	res, err := r.must(Command{Name: "id", Args: []string{"-Gn", name}})
	if err != nil {
		return nil, err
	}
	return strings.Fields(string(res.Stdout)), nil
}

func firstRawLine(b []byte) string {
	if i := bytes.IndexByte(b, '\n'); i >= 0 {
		return string(b[:i])
	}
	return string(b)
}

// A user block creates, updates or deletes the account with useradd,
// usermod and userdel, then makes sure every configured key is in
// ~/.ssh/authorized_keys (compared by key material, so re-running never adds
// a duplicate and existing options or comments are kept).
func (b userBlock) apply(r *run) blockOutcome {
	var o blockOutcome
	cur, exists, err := r.lookupUser(b.UserName)
	if err != nil {
		return o.fail("%v", err)
	}
	if b.Absent {
		if !exists {
			return o
		}
		o.change("user", "present", "absent")
		if !r.dry {
			if _, err := r.must(Command{Name: "userdel", Args: []string{b.UserName}}); err != nil {
				return o.fail("%v", err)
			}
		}
		return o
	}
	if !exists {
		o.change("user", "absent", "present")
		args := []string{"--create-home"}
		if b.Home != "" {
			args = append(args, "--home-dir", b.Home)
			o.change("home", "", b.Home)
		}
		if b.Shell != "" {
			args = append(args, "--shell", b.Shell)
			o.change("shell", "", b.Shell)
		}
		if b.UID != nil {
			args = append(args, "--uid", strconv.Itoa(*b.UID))
			o.change("uid", "", strconv.Itoa(*b.UID))
		}
		if len(b.Groups) > 0 {
			args = append(args, "--groups", strings.Join(b.Groups, ","))
			o.change("groups", "", strings.Join(b.Groups, ","))
		}
		if !r.dry {
			if _, err := r.must(Command{Name: "useradd", Args: append(args, b.UserName)}); err != nil {
				return o.fail("%v", err)
			}
			if cur, exists, err = r.lookupUser(b.UserName); err != nil {
				return o.fail("%v", err)
			} else if !exists {
				return o.fail("useradd succeeded but %s is not in the passwd database", b.UserName)
			}
		} else {
			cur = passwdEntry{name: b.UserName, uid: -1, gid: -1, home: b.Home}
			if cur.home == "" {
				cur.home = "/home/" + b.UserName
			}
		}
	} else {
		var args []string
		if b.Home != "" && b.Home != cur.home {
			args = append(args, "--home", b.Home, "--move-home")
			o.change("home", cur.home, b.Home)
		}
		if b.Shell != "" && b.Shell != cur.shell {
			args = append(args, "--shell", b.Shell)
			o.change("shell", cur.shell, b.Shell)
		}
		if b.UID != nil && *b.UID != cur.uid {
			args = append(args, "--uid", strconv.Itoa(*b.UID))
			o.change("uid", strconv.Itoa(cur.uid), strconv.Itoa(*b.UID))
		}
		if len(b.Groups) > 0 {
			in, err := r.userGroups(b.UserName)
			if err != nil {
				return o.fail("%v", err)
			}
			var missing []string
			for _, g := range b.Groups {
				if !slices.Contains(in, g) && !slices.Contains(missing, g) {
					missing = append(missing, g)
				}
			}
			if len(missing) > 0 {
				args = append(args, "--append", "--groups", strings.Join(missing, ","))
				o.change("groups", strings.Join(in, ","), strings.Join(append(slices.Clone(in), missing...), ","))
			}
		}
		if len(args) > 0 && !r.dry {
			if _, err := r.must(Command{Name: "usermod", Args: append(args, b.UserName)}); err != nil {
				return o.fail("%v", err)
			}
			if cur, _, err = r.lookupUser(b.UserName); err != nil {
				return o.fail("%v", err)
			}
		} else if b.Home != "" {
			cur.home = b.Home
		}
	}
	if len(b.SSHKeys) > 0 {
		if err := r.authorizedKeys(&o, cur, b.SSHKeys); err != nil {
			return o.fail("%v", err)
		}
	}
	return o
}

// authorizedKeys makes sure ~/.ssh (0700) and ~/.ssh/authorized_keys (0600),
// owned by the user, hold every key. It refuses symlinks there: the user
// controls their home, and root must not be led to write elsewhere.
func (r *run) authorizedKeys(o *blockOutcome, u passwdEntry, keys []string) error {
	if u.home == "" || !filepath.IsAbs(u.home) {
		return fmt.Errorf("user %s has no absolute home directory (%q)", u.name, u.home)
	}
	home := filepath.Join(r.opts.HomeRoot, u.home)
	sshDir := filepath.Join(home, ".ssh")
	path := filepath.Join(sshDir, "authorized_keys")

	if st, err := os.Stat(home); err != nil {
		if !(r.dry && errors.Is(err, fs.ErrNotExist)) {
			return fmt.Errorf("home directory: %w", err)
		}
	} else if !st.IsDir() {
		return fmt.Errorf("home %s is not a directory", home)
	}
	dirSt, err := os.Lstat(sshDir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		o.change(".ssh", "absent", "directory 0700")
		if !r.dry {
			if err := os.Mkdir(sshDir, 0o700); err != nil {
				return err
			}
			if err := os.Chown(sshDir, u.uid, u.gid); err != nil {
				return err
			}
		}
	case err != nil:
		return err
	case dirSt.Mode()&fs.ModeSymlink != 0 || !dirSt.IsDir():
		return fmt.Errorf("%s is a %s, not a directory: refusing to write keys through it", sshDir, fileType(dirSt))
	default:
		if err := r.fixOwnerMode(o, ".ssh", sshDir, dirSt, u, 0o700, true); err != nil {
			return err
		}
	}

	var old []byte
	fileSt, err := os.Lstat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		fileSt = nil
	case err != nil:
		return err
	case !fileSt.Mode().IsRegular():
		return fmt.Errorf("%s is a %s, not a regular file: refusing to write keys through it", path, fileType(fileSt))
	default:
		if old, err = os.ReadFile(path); err != nil {
			return err
		}
	}
	have := map[string]bool{}
	for _, line := range strings.Split(string(old), "\n") {
		if m, ok := provconfig.AuthorizedKey(line); ok {
			have[m] = true
		}
	}
	var add []string
	for _, k := range keys {
		m, _ := provconfig.AuthorizedKey(k)
		if !have[m] {
			have[m] = true
			add = append(add, k)
		}
	}
	if fileSt != nil {
		// When the file is rewritten below, writeAtomic sets these.
		if err := r.fixOwnerMode(o, "authorized_keys", path, fileSt, u, 0o600, len(add) == 0); err != nil {
			return err
		}
	}
	if len(add) == 0 {
		return nil
	}
	updated := append([]byte(nil), old...)
	if len(updated) > 0 && updated[len(updated)-1] != '\n' {
		updated = append(updated, '\n')
	}
	for _, k := range add {
		updated = append(updated, k...)
		updated = append(updated, '\n')
	}
	nOld := countKeys(old)
	c := Change{Field: "authorized_keys", Old: fmt.Sprintf("%d keys", nOld), New: fmt.Sprintf("%d keys", nOld+len(add))}
	if fileSt == nil {
		c.Old = "absent"
	}
	c.Diff = unifiedDiff(path, old, updated)
	o.changes = append(o.changes, c)
	if r.dry {
		return nil
	}
	return writeAtomic(path, updated, 0o600, u.uid, u.gid)
}

// fixOwnerMode reports where path lacks the user's ownership or mode, and
// fixes it when act is set (and this is not a dry run).
func (r *run) fixOwnerMode(o *blockOutcome, field, path string, st fs.FileInfo, u passwdEntry, mode uint32, act bool) error {
	act = act && !r.dry
	s, ok := st.Sys().(*syscall.Stat_t)
	if !ok {
		return nil
	}
	if u.uid >= 0 && (int(s.Uid) != u.uid || int(s.Gid) != u.gid) {
		o.change(field+" owner", fmt.Sprintf("%d:%d", s.Uid, s.Gid), fmt.Sprintf("%d:%d", u.uid, u.gid))
		if act {
			if err := os.Lchown(path, u.uid, u.gid); err != nil {
				return err
			}
		}
	}
	if s.Mode&0o7777 != mode {
		o.change(field+" perms", fmt.Sprintf("%04o", s.Mode&0o7777), fmt.Sprintf("%04o", mode))
		if act {
			if err := syscall.Chmod(path, mode); err != nil {
				return &fs.PathError{Op: "chmod", Path: path, Err: err}
			}
		}
	}
	return nil
}

func countKeys(b []byte) int {
	n := 0
	for _, line := range strings.Split(string(b), "\n") {
		if _, ok := provconfig.AuthorizedKey(line); ok {
			n++
		}
	}
	return n
}
