package provision

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// GitTimeout bounds one git command (a clone of a large repository is slow).
const GitTimeout = 30 * time.Minute

// gitEnv keeps git from prompting for credentials on a terminal nobody watches.
var gitEnv = []string{"GIT_TERMINAL_PROMPT=0", "LC_ALL=C"}

func (r *run) git(dir string, args ...string) (string, error) {
	if dir != "" {
		args = append([]string{"-C", dir}, args...)
	}
	res, err := r.must(Command{Name: "git", Args: args, Env: gitEnv, Timeout: GitTimeout})
	return strings.TrimSpace(string(res.Stdout)), err
}

// gitOK runs a git query whose non-zero exit means "no".
func (r *run) gitOK(dir string, args ...string) (string, bool, error) {
	res, err := r.exec(Command{Name: "git", Args: append([]string{"-C", dir}, args...), Env: gitEnv, Timeout: GitTimeout})
	if err != nil {
		return "", false, fmt.Errorf("git %s: %w", strings.Join(args, " "), err)
	}
	return strings.TrimSpace(string(res.Stdout)), res.ExitCode == 0, nil
}

// A clone block clones url into dest, or, when dest is already a checkout,
// fetches and checks out ref there; it is "changed" when HEAD moved (or the
// origin URL was updated). A branch ref is checked out as a local branch
// reset to the remote one; a tag or commit is checked out detached. Local
// uncommitted changes are kept when git can (checkout fails if they
// conflict). A dest that exists and is not a checkout is refused.
func (b cloneBlock) apply(r *run) blockOutcome {
	var o blockOutcome
	st, err := os.Lstat(b.Dest)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return o.fail("%v", err)
	}
	if st != nil && st.Mode()&fs.ModeSymlink != 0 {
		if st, err = os.Stat(b.Dest); err != nil {
			return o.fail("%v", err)
		}
	}
	if st != nil && !st.IsDir() {
		return o.fail("dest %s exists and is not a directory (it is a %s)", b.Dest, fileType(st))
	}
	if st == nil || isEmptyDir(b.Dest) {
		return b.clone(r, o)
	}
	if _, err := os.Stat(filepath.Join(b.Dest, ".git")); err != nil {
		return o.fail("dest %s exists and is not a git checkout (no .git); move it away or pick another dest", b.Dest)
	}
	top, err := r.git(b.Dest, "rev-parse", "--show-toplevel")
	if err != nil {
		return o.fail("dest %s is not a usable git checkout: %v", b.Dest, err)
	}
	if !samePath(top, b.Dest) {
		return o.fail("dest %s is inside the checkout %s, not the top of one", b.Dest, top)
	}
	return b.update(r, o)
}

func (b cloneBlock) clone(r *run, o blockOutcome) blockOutcome {
	what := b.URL
	if b.Ref != "" {
		what += " at " + b.Ref
	}
	if r.dry {
		// Check the remote answers, so the dry run tells the truth about it.
		if _, err := r.git("", "ls-remote", "--quiet", "--exit-code", "--", b.URL, "HEAD"); err != nil {
			return o.fail("%v", err)
		}
		o.change("checkout", "absent", what)
		return o
	}
	if err := os.MkdirAll(filepath.Dir(b.Dest), defaultDirMode); err != nil {
		return o.fail("%v", err)
	}
	if _, err := r.git("", "clone", "--quiet", "--", b.URL, b.Dest); err != nil {
		return o.fail("%v", err)
	}
	if b.Ref != "" {
		if err := b.checkout(r, ""); err != nil {
			return o.fail("%v", err)
		}
	}
	head, err := r.git(b.Dest, "rev-parse", "HEAD")
	if err != nil {
		return o.fail("%v", err)
	}
	o.change("checkout", "absent", what+" ("+head+")")
	return o
}

func (b cloneBlock) update(r *run, o blockOutcome) blockOutcome {
	origin, _, err := r.gitOK(b.Dest, "remote", "get-url", "origin")
	if err != nil {
		return o.fail("%v", err)
	}
	if origin != b.URL {
		o.change("origin", origin, b.URL)
		if !r.dry {
			verb := "set-url"
			if origin == "" {
				verb = "add"
			}
			if _, err := r.git(b.Dest, "remote", verb, "origin", b.URL); err != nil {
				return o.fail("%v", err)
			}
		}
	}
	before, _, err := r.gitOK(b.Dest, "rev-parse", "--verify", "--quiet", "HEAD")
	if err != nil {
		return o.fail("%v", err)
	}
	if r.dry {
		target, err := b.remoteTarget(r)
		if err != nil {
			return o.fail("%v", err)
		}
		if target != "" && !strings.HasPrefix(before, target) {
			o.change("head", before, target)
		} else if target == "" {
			o.change("head", before, b.Ref+" (a commit not fetched yet)")
		}
		return o
	}
	if _, err := r.git(b.Dest, "fetch", "--quiet", "--tags", "--force", "--prune", "origin"); err != nil {
		return o.fail("%v", err)
	}
	if err := b.checkout(r, before); err != nil {
		return o.fail("%v", err)
	}
	after, err := r.git(b.Dest, "rev-parse", "HEAD")
	if err != nil {
		return o.fail("%v", err)
	}
	if after != before {
		o.change("head", before, after)
	}
	return o
}

// checkout moves the checkout to b.Ref (or the remote's default branch),
// unless HEAD is already there.
func (b cloneBlock) checkout(r *run, head string) error {
	ref := b.Ref
	if ref == "" {
		def, ok, err := r.gitOK(b.Dest, "symbolic-ref", "--quiet", "--short", "refs/remotes/origin/HEAD")
		if err != nil {
			return err
		}
		if !ok {
			if _, err := r.git(b.Dest, "remote", "set-head", "origin", "--auto"); err != nil {
				return err
			}
			if def, err = r.git(b.Dest, "symbolic-ref", "--short", "refs/remotes/origin/HEAD"); err != nil {
				return err
			}
		}
		ref = strings.TrimPrefix(def, "origin/")
	}
	if sha, ok, err := r.gitOK(b.Dest, "rev-parse", "--verify", "--quiet", "refs/remotes/origin/"+ref+"^{commit}"); err != nil {
		return err
	} else if ok {
		branch, _, err := r.gitOK(b.Dest, "symbolic-ref", "--quiet", "--short", "HEAD")
		if err != nil {
			return err
		}
		if branch == ref && head == sha {
			return nil
		}
		_, err = r.git(b.Dest, "checkout", "--quiet", "-B", ref, "refs/remotes/origin/"+ref)
		return err
	}
	sha, ok, err := r.gitOK(b.Dest, "rev-parse", "--verify", "--quiet", ref+"^{commit}")
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("ref %q is not a branch, tag or commit of %s", ref, b.URL)
	}
	if head == sha {
		return nil
	}
	_, err = r.git(b.Dest, "checkout", "--quiet", "--detach", sha)
	return err
}

// remoteTarget resolves b.Ref on the remote without fetching (for dry runs).
// It returns "" for a commit id the remote does not advertise.
func (b cloneBlock) remoteTarget(r *run) (string, error) {
	ref := b.Ref
	if ref == "" {
		ref = "HEAD"
	}
	out, err := r.git("", "ls-remote", "--quiet", "--", b.URL, ref)
	if err != nil {
		return "", err
	}
	refs := map[string]string{}
	for _, line := range strings.Split(out, "\n") {
		if sha, name, ok := strings.Cut(line, "\t"); ok {
			refs[name] = sha
		}
	}
	for _, name := range []string{"HEAD", "refs/heads/" + ref, "refs/tags/" + ref + "^{}", "refs/tags/" + ref} {
		if ref != "HEAD" && name == "HEAD" {
			continue
		}
		if sha, ok := refs[name]; ok {
			return sha, nil
		}
	}
	if isHex(ref) && len(ref) >= 4 {
		if sha, ok, err := r.gitOK(b.Dest, "rev-parse", "--verify", "--quiet", ref+"^{commit}"); err == nil && ok {
			return sha, nil
		}
		return "", nil
	}
	return "", fmt.Errorf("ref %q is not a branch, tag or commit of %s", b.Ref, b.URL)
}

func isHex(s string) bool {
	for _, c := range s {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return s != ""
}

func isEmptyDir(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	names, err := f.Readdirnames(1)
	return err != nil && len(names) == 0
}

func samePath(a, b string) bool {
	ra, err1 := filepath.EvalSymlinks(a)
	rb, err2 := filepath.EvalSymlinks(b)
	if err1 != nil || err2 != nil {
		return filepath.Clean(a) == filepath.Clean(b)
	}
	return ra == rb
}
