package provision

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hpt-dev/hpt/provconfig"
)

// gitT runs git in dir with a fixed identity and returns its trimmed output.
func gitT(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", append([]string{"-c", "user.name=hpt", "-c", "user.email=hpt@example.com", "-c", "init.defaultBranch=main", "-C", dir}, args...)...)
	cmd.Env = append(os.Environ(), "GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %v: %v\n%s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

// upstream makes a repository with one commit on main and returns its path.
func upstream(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "upstream")
	os.Mkdir(dir, 0o755)
	gitT(t, dir, "init", "-q")
	commit(t, dir, "README", "first\n")
	return dir
}

func commit(t *testing.T, repo, file, content string) string {
	t.Helper()
	os.WriteFile(filepath.Join(repo, file), []byte(content), 0o644)
	gitT(t, repo, "add", file)
	gitT(t, repo, "commit", "-q", "-m", "change "+file)
	return gitT(t, repo, "rev-parse", "HEAD")
}

func cloneConfig(t *testing.T, url, dest, ref string) *provconfig.Config {
	src := fmt.Sprintf("[[clone]]\nurl = %q\ndest = %q\n", url, dest)
	if ref != "" {
		src += fmt.Sprintf("ref = %q\n", ref)
	}
	return parse(t, src, nil)
}

func TestCloneAndUpdate(t *testing.T) {
	needTool(t, "git", "git")
	up := upstream(t)
	dest := filepath.Join(t.TempDir(), "deep", "checkout")
	cfg := cloneConfig(t, up, dest, "")

	// Dry run: says it would clone, creates nothing.
	rep := apply(t, cfg, Options{DryRun: true})
	wantOutcomes(t, rep, OutcomeChanged)
	if _, err := os.Stat(dest); !os.IsNotExist(err) {
		t.Fatal("dry run cloned")
	}

	rep = apply(t, cfg, Options{})
	wantOutcomes(t, rep, OutcomeChanged)
	head := gitT(t, up, "rev-parse", "HEAD")
	if got := gitT(t, dest, "rev-parse", "HEAD"); got != head {
		t.Fatalf("HEAD %s, want %s", got, head)
	}
	if c := findChange(t, rep, 0, "checkout"); !strings.Contains(c.New, head) {
		t.Fatalf("checkout change %+v", c)
	}
	wantOutcomes(t, apply(t, cfg, Options{}), OutcomeOK) // upstream hpt failed here

	// Upstream moves: dry run reports it and leaves HEAD; the real run follows.
	next := commit(t, up, "README", "second\n")
	rep = apply(t, cfg, Options{DryRun: true})
	wantOutcomes(t, rep, OutcomeChanged)
	if c := findChange(t, rep, 0, "head"); c.Old != head || c.New != next {
		t.Fatalf("dry-run head change %+v", c)
	}
	if got := gitT(t, dest, "rev-parse", "HEAD"); got != head {
		t.Fatal("dry run moved HEAD")
	}
	rep = apply(t, cfg, Options{})
	wantOutcomes(t, rep, OutcomeChanged)
	if c := findChange(t, rep, 0, "head"); c.Old != head || c.New != next {
		t.Fatalf("head change %+v", c)
	}
	if data, _ := os.ReadFile(filepath.Join(dest, "README")); string(data) != "second\n" {
		t.Fatalf("work tree not updated: %q", data)
	}
	wantOutcomes(t, apply(t, cfg, Options{}), OutcomeOK)
	wantOutcomes(t, apply(t, cfg, Options{DryRun: true}), OutcomeOK)
}

func TestCloneRefs(t *testing.T) {
	needTool(t, "git", "git")
	up := upstream(t)
	first := gitT(t, up, "rev-parse", "HEAD")
	gitT(t, up, "tag", "v1")
	gitT(t, up, "checkout", "-q", "-b", "feature")
	feature := commit(t, up, "f", "feature\n")
	gitT(t, up, "checkout", "-q", "main")
	main := commit(t, up, "m", "main\n")

	cases := []struct {
		ref, want, branch string
	}{
		{"", main, "main"},
		{"main", main, "main"},
		{"feature", feature, "feature"},
		{"v1", first, ""},
		{first, first, ""},
		{first[:10], first, ""},
	}
	for _, tc := range cases {
		t.Run("ref="+tc.ref, func(t *testing.T) {
			dest := filepath.Join(t.TempDir(), "co")
			cfg := cloneConfig(t, up, dest, tc.ref)
			wantOutcomes(t, apply(t, cfg, Options{}), OutcomeChanged)
			if got := gitT(t, dest, "rev-parse", "HEAD"); got != tc.want {
				t.Fatalf("HEAD %s, want %s", got, tc.want)
			}
			branch, _ := exec.Command("git", "-C", dest, "symbolic-ref", "--quiet", "--short", "HEAD").Output()
			if got := strings.TrimSpace(string(branch)); got != tc.branch {
				t.Fatalf("branch %q, want %q", got, tc.branch)
			}
			wantOutcomes(t, apply(t, cfg, Options{}), OutcomeOK)
			wantOutcomes(t, apply(t, cfg, Options{DryRun: true}), OutcomeOK)
		})
	}

	// Switching ref in an existing checkout.
	dest := filepath.Join(t.TempDir(), "co")
	wantOutcomes(t, apply(t, cloneConfig(t, up, dest, "main"), Options{}), OutcomeChanged)
	rep := apply(t, cloneConfig(t, up, dest, "feature"), Options{})
	wantOutcomes(t, rep, OutcomeChanged)
	if c := findChange(t, rep, 0, "head"); c.Old != main || c.New != feature {
		t.Fatalf("head change %+v", c)
	}
	rep = apply(t, cloneConfig(t, up, dest, "nosuchref"), Options{})
	wantOutcomes(t, rep, OutcomeFailed)
	if !strings.Contains(rep.Blocks[0].Error, `ref "nosuchref" is not a branch, tag or commit`) {
		t.Fatalf("error %q", rep.Blocks[0].Error)
	}
}

func TestCloneDestChecks(t *testing.T) {
	needTool(t, "git", "git")
	up := upstream(t)

	notRepo := t.TempDir()
	os.WriteFile(filepath.Join(notRepo, "data"), []byte("precious"), 0o644)
	rep := apply(t, cloneConfig(t, up, notRepo, ""), Options{})
	wantOutcomes(t, rep, OutcomeFailed)
	if !strings.Contains(rep.Blocks[0].Error, "exists and is not a git checkout") {
		t.Fatalf("error %q", rep.Blocks[0].Error)
	}
	if data, _ := os.ReadFile(filepath.Join(notRepo, "data")); string(data) != "precious" {
		t.Fatal("existing directory touched")
	}

	file := filepath.Join(t.TempDir(), "f")
	os.WriteFile(file, nil, 0o644)
	wantOutcomes(t, apply(t, cloneConfig(t, up, file, ""), Options{}), OutcomeFailed)

	empty := t.TempDir()
	wantOutcomes(t, apply(t, cloneConfig(t, up, empty, ""), Options{}), OutcomeChanged)

	// A changed url is written to origin.
	other := upstream(t)
	gitT(t, other, "fetch", "-q", up, "main")
	gitT(t, other, "reset", "-q", "--hard", "FETCH_HEAD")
	rep = apply(t, cloneConfig(t, other, empty, ""), Options{})
	wantOutcomes(t, rep, OutcomeChanged)
	if c := findChange(t, rep, 0, "origin"); c.Old != up || c.New != other {
		t.Fatalf("origin change %+v", c)
	}
	wantOutcomes(t, apply(t, cloneConfig(t, other, empty, ""), Options{}), OutcomeOK)

	// An unreachable remote fails the dry run too.
	missing := filepath.Join(t.TempDir(), "nope")
	wantOutcomes(t, apply(t, cloneConfig(t, missing, filepath.Join(t.TempDir(), "x"), ""), Options{DryRun: true}), OutcomeFailed)
}

func TestCloneCommands(t *testing.T) {
	dest := filepath.Join(t.TempDir(), "app")
	rec := &RecordingRunner{Handler: func(c Command) (CommandResult, error) {
		switch strings.Join(c.Args, " ") {
		case "-C " + dest + " rev-parse --verify --quiet refs/remotes/origin/v2^{commit}":
			return exit(1), nil
		case "-C " + dest + " rev-parse --verify --quiet v2^{commit}", "-C " + dest + " rev-parse HEAD":
			return out("abc123\n"), nil
		}
		return CommandResult{}, nil
	}}
	cfg := cloneConfig(t, "https://example.com/app.git", dest, "v2")
	rep := apply(t, cfg, Options{Runner: rec})
	wantOutcomes(t, rep, OutcomeChanged)
	equalLines(t, rec.Lines(), []string{
		"git clone --quiet -- https://example.com/app.git " + dest,
		"git -C " + dest + " rev-parse --verify --quiet 'refs/remotes/origin/v2^{commit}'",
		"git -C " + dest + " rev-parse --verify --quiet 'v2^{commit}'",
		"git -C " + dest + " checkout --quiet --detach abc123",
		"git -C " + dest + " rev-parse HEAD",
	})
	if c := findChange(t, rep, 0, "checkout"); c.New != "https://example.com/app.git at v2 (abc123)" {
		t.Fatalf("change %+v", c)
	}
	for _, c := range rec.Commands() {
		if !strings.Contains(strings.Join(c.Env, " "), "GIT_TERMINAL_PROMPT=0") {
			t.Fatalf("git may prompt: %+v", c)
		}
	}
}
