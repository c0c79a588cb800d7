package provision

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
)

const (
	defaultFileMode = 0o644
	defaultDirMode  = 0o755
)

func (b fileBlock) apply(r *run) blockOutcome {
	var o blockOutcome
	st, err := os.Lstat(b.Path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return o.fail("%v", err)
	}
	exists := err == nil
	switch {
	case b.Absent:
		return b.remove(r, st)
	case b.Dir:
		return b.directory(r, st)
	case b.Content != nil || b.Source != "":
		return b.regular(r, st)
	}
	// Attributes only, of a path that must exist (symlinks followed, as
	// chmod and chown do).
	if !exists {
		return o.fail("%s does not exist (set content, source or dir = true to create it)", b.Path)
	}
	if st, err = os.Stat(b.Path); err != nil {
		return o.fail("%v", err)
	}
	want, err := b.wantAttrs(r, st)
	if err != nil {
		return o.fail("%v", err)
	}
	o.changes = want.changes
	if !r.dry {
		if err := want.set(b.Path); err != nil {
			return o.fail("%v", err)
		}
	}
	return o
}

func (b fileBlock) remove(r *run, st fs.FileInfo) blockOutcome {
	var o blockOutcome
	if st == nil {
		return o
	}
	o.change("state", fileType(st), "absent")
	if r.dry {
		return o
	}
	var err error
	if st.IsDir() {
		err = os.RemoveAll(b.Path)
	} else {
		err = os.Remove(b.Path)
	}
	if err != nil {
		return o.fail("remove: %v", err)
	}
	return o
}

func (b fileBlock) directory(r *run, st fs.FileInfo) blockOutcome {
	var o blockOutcome
	if st != nil && st.Mode()&fs.ModeSymlink != 0 {
		if target, err := os.Stat(b.Path); err == nil && target.IsDir() {
			st = target // a symlink to a directory will do
		}
	}
	if st != nil && !st.IsDir() {
		return o.fail("%s exists and is not a directory (it is a %s)", b.Path, fileType(st))
	}
	want, err := b.wantAttrs(r, st)
	if err != nil {
		return o.fail("%v", err)
	}
	if st == nil {
		o.change("state", "absent", "directory")
		if want.mode < 0 {
			want.mode = defaultDirMode
		}
	}
	o.changes = append(o.changes, want.changes...)
	if r.dry {
		return o
	}
	if st == nil {
		if err := os.MkdirAll(b.Path, defaultDirMode); err != nil {
			return o.fail("%v", err)
		}
		want.changed = true
	}
	if err := want.set(b.Path); err != nil {
		return o.fail("%v", err)
	}
	return o
}

func (b fileBlock) regular(r *run, st fs.FileInfo) blockOutcome {
	var o blockOutcome
	content, err := b.render(r)
	if err != nil {
		return o.fail("%v", err)
	}
	var old []byte
	replace := false // the path exists but is not a regular file we can update
	if st != nil {
		switch {
		case st.Mode().IsRegular():
			if st.Size() > MaxBundleSize {
				replace = true // larger than any content we could write
			} else if old, err = os.ReadFile(b.Path); err != nil {
				return o.fail("%v", err)
			}
		case st.Mode()&fs.ModeSymlink != 0:
			target, _ := os.Readlink(b.Path)
			o.change("type", "symlink to "+target, "file")
			st, replace = nil, true
		case st.IsDir():
			return o.fail("%s is a directory; set dir = true, or remove it first with absent = true", b.Path)
		default:
			return o.fail("%s is a %s, not a regular file", b.Path, fileType(st))
		}
	}
	want, err := b.wantAttrs(r, st)
	if err != nil {
		return o.fail("%v", err)
	}
	same := st != nil && !replace && bytes.Equal(old, content)
	if !same {
		c := Change{Field: "content", Old: summarize(old, st != nil && !replace), New: summarize(content, true)}
		if replace && st != nil { // too large to read
			c.Old = fmt.Sprintf("%d bytes", st.Size())
		}
		c.Diff = unifiedDiff(b.Path, old, content)
		o.changes = append(o.changes, c)
	}
	parent := filepath.Dir(b.Path)
	if !same {
		if _, err := os.Stat(parent); errors.Is(err, fs.ErrNotExist) {
			o.change("parent", "absent", "directory "+parent)
		}
	}
	o.changes = append(o.changes, want.changes...)
	if r.dry {
		return o
	}
	if same {
		if err := want.set(b.Path); err != nil {
			return o.fail("%v", err)
		}
		return o
	}
	if err := os.MkdirAll(parent, defaultDirMode); err != nil {
		return o.fail("%v", err)
	}
	mode, uid, gid := want.final(st, defaultFileMode)
	if err := writeAtomic(b.Path, content, mode, uid, gid); err != nil {
		return o.fail("%v", err)
	}
	return o
}

func (b fileBlock) render(r *run) ([]byte, error) {
	data, err := b.Render(r.data)
	if err != nil {
		return nil, fmt.Errorf("template: %w", err)
	}
	return data, nil
}

// attrs is the desired mode and ownership of a path, compared with what it has.
type attrs struct {
	mode     int // -1: not managed
	uid, gid int // -1: not managed
	changes  []Change
	changed  bool // set() must act
}

// wantAttrs compares the block's perms, owner and group with st (nil when
// the path does not exist yet).
func (b fileBlock) wantAttrs(r *run, st fs.FileInfo) (attrs, error) {
	a := attrs{mode: -1, uid: -1, gid: -1}
	var cur *syscall.Stat_t
	if st != nil {
		cur, _ = st.Sys().(*syscall.Stat_t)
	}
	if b.Perms != "" {
		a.mode = int(b.Mode())
		if cur == nil {
			a.changes = append(a.changes, Change{Field: "perms", Old: "", New: fmt.Sprintf("%04o", b.Mode())})
		} else if int(cur.Mode&0o7777) != a.mode {
			a.changes = append(a.changes, Change{Field: "perms", Old: fmt.Sprintf("%04o", cur.Mode&0o7777), New: fmt.Sprintf("%04o", b.Mode())})
			a.changed = true
		}
	}
	for _, which := range []struct {
		field, want string
		id          *int
		current     func() uint32
		lookup      func(string) (int, error)
		name        func(uint32) string
	}{
		{"owner", b.Owner, &a.uid, func() uint32 { return cur.Uid }, lookupUID, userName},
		{"group", b.Group, &a.gid, func() uint32 { return cur.Gid }, lookupGID, groupName},
	} {
		if which.want == "" {
			continue
		}
		id, err := which.lookup(which.want)
		if err != nil {
			if r.dry {
				// An earlier block may create it; the real run will tell.
				a.changes = append(a.changes, Change{Field: which.field, New: which.want + " (does not exist yet)"})
				continue
			}
			return a, err
		}
		*which.id = id
		if cur == nil {
			a.changes = append(a.changes, Change{Field: which.field, New: which.want})
		} else if cur := which.current(); int(cur) != id {
			a.changes = append(a.changes, Change{Field: which.field, Old: which.name(cur), New: which.want})
			a.changed = true
		}
	}
	return a, nil
}

// set applies the managed attributes to an existing path.
func (a attrs) set(path string) error {
	if !a.changed {
		return nil
	}
	// chown first: it may clear setuid/setgid bits that chmod then restores.
	if a.uid >= 0 || a.gid >= 0 {
		if err := os.Chown(path, a.uid, a.gid); err != nil {
			return err
		}
	}
	if a.mode >= 0 {
		if err := syscall.Chmod(path, uint32(a.mode)); err != nil {
			return &fs.PathError{Op: "chmod", Path: path, Err: err}
		}
	}
	return nil
}

// final returns the mode and owner a replacement file gets: the managed
// values, else those of the file it replaces (st), else the defaults.
func (a attrs) final(st fs.FileInfo, defMode int) (mode, uid, gid int) {
	mode, uid, gid = a.mode, a.uid, a.gid
	var cur *syscall.Stat_t
	if st != nil {
		cur, _ = st.Sys().(*syscall.Stat_t)
	}
	if mode < 0 {
		mode = defMode
		if cur != nil {
			mode = int(cur.Mode & 0o7777)
		}
	}
	if uid < 0 && cur != nil {
		uid = int(cur.Uid)
	}
	if gid < 0 && cur != nil {
		gid = int(cur.Gid)
	}
	return mode, uid, gid
}

// writeAtomic replaces path with data: a temporary file in the same
// directory gets the content, mode and owner, is synced, then renamed over
// path, so readers see the old file or the new one, never a mix. uid or gid
// -1 leaves the new file's owner as created.
func writeAtomic(path string, data []byte, mode, uid, gid int) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".hpt-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if _, err = f.Write(data); err != nil {
		return err
	}
	if uid >= 0 || gid >= 0 {
		var st fs.FileInfo
		if st, err = f.Stat(); err != nil {
			return err
		}
		if s, ok := st.Sys().(*syscall.Stat_t); !ok || (uid >= 0 && int(s.Uid) != uid) || (gid >= 0 && int(s.Gid) != gid) {
			if err = f.Chown(uid, gid); err != nil {
				return err
			}
		}
	}
	if err = syscall.Fchmod(int(f.Fd()), uint32(mode)); err != nil {
		return &fs.PathError{Op: "chmod", Path: tmp, Err: err}
	}
	if err = f.Sync(); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	if err = os.Rename(tmp, path); err != nil {
		return err
	}
	if d, derr := os.Open(dir); derr == nil { // make the rename durable; best effort
		d.Sync()
		d.Close()
	}
	return nil
}

func fileType(st fs.FileInfo) string {
	m := st.Mode()
	switch {
	case m.IsRegular():
		return "file"
	case m.IsDir():
		return "directory"
	case m&fs.ModeSymlink != 0:
		return "symlink"
	case m&fs.ModeNamedPipe != 0:
		return "fifo"
	case m&fs.ModeSocket != 0:
		return "socket"
	case m&fs.ModeDevice != 0:
		return "device"
	}
	return "special file"
}

// summarize describes content for Change.Old/New: size and a short checksum.
func summarize(b []byte, exists bool) string {
	if !exists {
		return "absent"
	}
	sum := sha256.Sum256(b)
	return fmt.Sprintf("%d bytes, sha256 %x", len(b), sum[:6])
}

// lookupUID resolves a user name or numeric uid.
func lookupUID(s string) (int, error) {
	if n, err := strconv.ParseUint(s, 10, 32); err == nil {
		return int(n), nil
	}
	u, err := user.Lookup(s)
	if err != nil {
		return -1, fmt.Errorf("owner %q: %w", s, err)
	}
	n, err := strconv.Atoi(u.Uid)
	if err != nil {
		return -1, fmt.Errorf("owner %q: uid %q: %w", s, u.Uid, err)
	}
	return n, nil
}

// lookupGID resolves a group name or numeric gid.
func lookupGID(s string) (int, error) {
	if n, err := strconv.ParseUint(s, 10, 32); err == nil {
		return int(n), nil
	}
	g, err := user.LookupGroup(s)
	if err != nil {
		return -1, fmt.Errorf("group %q: %w", s, err)
	}
	n, err := strconv.Atoi(g.Gid)
	if err != nil {
		return -1, fmt.Errorf("group %q: gid %q: %w", s, g.Gid, err)
	}
	return n, nil
}

func userName(uid uint32) string {
	id := strconv.FormatUint(uint64(uid), 10)
	if u, err := user.LookupId(id); err == nil {
		return u.Username
	}
	return id
}

func groupName(gid uint32) string {
	id := strconv.FormatUint(uint64(gid), 10)
	if g, err := user.LookupGroupId(id); err == nil {
		return g.Name
	}
	return id
}
