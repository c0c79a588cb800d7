package provision

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/hpt-dev/hpt/provconfig"
)

func modeOf(t *testing.T, path string) uint32 {
	t.Helper()
	st, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	return st.Sys().(*syscall.Stat_t).Mode & 0o7777
}

func TestFileBlocks(t *testing.T) {
	type check func(t *testing.T, dir string, rep *Report)
	fileIs := func(rel, content string, mode uint32) check {
		return func(t *testing.T, dir string, rep *Report) {
			t.Helper()
			p := filepath.Join(dir, rel)
			got, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != content {
				t.Fatalf("%s = %q, want %q", rel, got, content)
			}
			if m := modeOf(t, p); mode != 0 && m != mode {
				t.Fatalf("%s mode = %04o, want %04o", rel, m, mode)
			}
		}
	}
	missing := func(rel string) check {
		return func(t *testing.T, dir string, rep *Report) {
			t.Helper()
			if _, err := os.Lstat(filepath.Join(dir, rel)); !os.IsNotExist(err) {
				t.Fatalf("%s exists (err %v)", rel, err)
			}
		}
	}
	cases := []struct {
		name    string
		setup   func(t *testing.T, dir string)
		config  string // %[1]s is the temp dir
		files   map[string][]byte
		opts    Options
		first   Outcome
		fields  []string // changes of the first apply, in order
		checks  []check
		noAgain bool // the second apply is not expected to be ok
	}{
		{
			name:   "create with content",
			config: "[[file]]\npath = \"%[1]s/a.txt\"\ncontent = \"hello\\n\"\n",
			first:  OutcomeChanged, fields: []string{"content"},
			checks: []check{fileIs("a.txt", "hello\n", 0o644)},
		},
		{
			name:   "create with perms in missing parent",
			config: "[[file]]\npath = \"%[1]s/sub/dir/a.txt\"\ncontent = \"x\"\nperms = \"0600\"\n",
			first:  OutcomeChanged, fields: []string{"content", "parent", "perms"},
			checks: []check{fileIs("sub/dir/a.txt", "x", 0o600)},
		},
		{
			name:   "update keeps unmanaged mode",
			setup:  func(t *testing.T, dir string) { os.WriteFile(filepath.Join(dir, "a"), []byte("old\n"), 0o640) },
			config: "[[file]]\npath = \"%[1]s/a\"\ncontent = \"new\\n\"\n",
			first:  OutcomeChanged, fields: []string{"content"},
			checks: []check{fileIs("a", "new\n", 0o640)},
		},
		{
			name: "already right",
			setup: func(t *testing.T, dir string) {
				os.WriteFile(filepath.Join(dir, "a"), []byte("same"), 0o644)
			},
			config: "[[file]]\npath = \"%[1]s/a\"\ncontent = \"same\"\nperms = \"0644\"\n",
			first:  OutcomeOK,
		},
		{
			name:   "perms only",
			setup:  func(t *testing.T, dir string) { os.WriteFile(filepath.Join(dir, "a"), []byte("x"), 0o644) },
			config: "[[file]]\npath = \"%[1]s/a\"\nperms = \"4750\"\n",
			first:  OutcomeChanged, fields: []string{"perms"},
			checks: []check{fileIs("a", "x", 0o4750)},
		},
		{
			name:   "perms of missing path fails",
			config: "[[file]]\npath = \"%[1]s/nope\"\nperms = \"0600\"\n",
			first:  OutcomeFailed, noAgain: true,
		},
		{
			name:   "source",
			config: "[[file]]\npath = \"%[1]s/motd\"\nsource = \"files/motd\"\n",
			files:  map[string][]byte{"files/motd": []byte("from the bundle\n")},
			first:  OutcomeChanged, fields: []string{"content"},
			checks: []check{fileIs("motd", "from the bundle\n", 0)},
		},
		{
			name:   "template content",
			config: "[vars]\nenv = \"prod\"\n[[file]]\npath = \"%[1]s/t\"\ncontent = \"{{ .Target.Name }} {{ .Target.Labels.role }} {{ .Vars.env }} {{ .Vars.extra }}\"\ntemplate = true\n",
			opts:   Options{Facts: provconfig.Facts{Name: "web1", Labels: map[string]string{"role": "web"}}, Vars: map[string]string{"extra": "x"}},
			first:  OutcomeChanged, fields: []string{"content"},
			checks: []check{fileIs("t", "web1 web prod x", 0)},
		},
		{
			name:   "template source",
			config: "[[file]]\npath = \"%[1]s/t\"\nsource = \"t.tmpl\"\ntemplate = true\n",
			files:  map[string][]byte{"t.tmpl": []byte("name={{ .Target.Name }}\n")},
			opts:   Options{Facts: provconfig.Facts{Name: "db"}},
			first:  OutcomeChanged, fields: []string{"content"},
			checks: []check{fileIs("t", "name=db\n", 0)},
		},
		{
			name:   "template missing label fails",
			config: "[[file]]\npath = \"%[1]s/t\"\ncontent = \"{{ .Target.Labels.nope }}\"\ntemplate = true\n",
			first:  OutcomeFailed, noAgain: true,
			checks: []check{missing("t")},
		},
		{
			name:   "dir",
			config: "[[file]]\npath = \"%[1]s/d/e\"\ndir = true\nperms = \"0750\"\n",
			first:  OutcomeChanged, fields: []string{"state", "perms"},
			checks: []check{func(t *testing.T, dir string, rep *Report) {
				if m := modeOf(t, filepath.Join(dir, "d/e")); m != 0o750 {
					t.Fatalf("mode %04o", m)
				}
			}},
		},
		{
			name:   "dir over a file fails",
			setup:  func(t *testing.T, dir string) { os.WriteFile(filepath.Join(dir, "f"), nil, 0o644) },
			config: "[[file]]\npath = \"%[1]s/f\"\ndir = true\n",
			first:  OutcomeFailed, noAgain: true,
		},
		{
			name:   "content over a dir fails",
			setup:  func(t *testing.T, dir string) { os.Mkdir(filepath.Join(dir, "d"), 0o755) },
			config: "[[file]]\npath = \"%[1]s/d\"\ncontent = \"x\"\n",
			first:  OutcomeFailed, noAgain: true,
		},
		{
			name:   "absent file",
			setup:  func(t *testing.T, dir string) { os.WriteFile(filepath.Join(dir, "f"), nil, 0o644) },
			config: "[[file]]\npath = \"%[1]s/f\"\nabsent = true\n",
			first:  OutcomeChanged, fields: []string{"state"},
			checks: []check{missing("f")},
		},
		{
			name: "absent dir tree",
			setup: func(t *testing.T, dir string) {
				os.MkdirAll(filepath.Join(dir, "d/x/y"), 0o755)
				os.WriteFile(filepath.Join(dir, "d/x/y/z"), nil, 0o644)
			},
			config: "[[file]]\npath = \"%[1]s/d\"\nabsent = true\n",
			first:  OutcomeChanged, fields: []string{"state"},
			checks: []check{missing("d")},
		},
		{
			name:   "absent already",
			config: "[[file]]\npath = \"%[1]s/none\"\nabsent = true\n",
			first:  OutcomeOK,
		},
		{
			name: "symlink replaced by file",
			setup: func(t *testing.T, dir string) {
				os.WriteFile(filepath.Join(dir, "target"), []byte("t"), 0o644)
				os.Symlink(filepath.Join(dir, "target"), filepath.Join(dir, "link"))
			},
			config: "[[file]]\npath = \"%[1]s/link\"\ncontent = \"c\"\n",
			first:  OutcomeChanged, fields: []string{"type", "content"},
			checks: []check{fileIs("link", "c", 0o644), fileIs("target", "t", 0)},
		},
		{
			name:   "empty content",
			config: "[[file]]\npath = \"%[1]s/empty\"\ncontent = \"\"\n",
			first:  OutcomeChanged, fields: []string{"content"},
			checks: []check{fileIs("empty", "", 0o644)},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if tc.setup != nil {
				tc.setup(t, dir)
			}
			cfg := parse(t, fmt.Sprintf(tc.config, dir), tc.files)
			opts := tc.opts
			opts.Runner = &RecordingRunner{Handler: func(c Command) (CommandResult, error) {
				t.Errorf("file block ran a command: %s", c)
				return CommandResult{}, nil
			}}

			// A dry run first: it must report the same as the real run, and change nothing.
			before := snapshot(t, dir)
			dry := opts
			dry.DryRun = true
			drep := apply(t, cfg, dry)
			if after := snapshot(t, dir); after != before {
				t.Fatalf("dry run changed the tree:\nbefore:\n%s\nafter:\n%s", before, after)
			}
			if !drep.DryRun {
				t.Fatal("report not marked dry run")
			}

			rep := apply(t, cfg, opts)
			wantOutcomes(t, rep, tc.first)
			var fields []string
			for _, c := range rep.Blocks[0].Changes {
				fields = append(fields, c.Field)
			}
			if strings.Join(fields, ",") != strings.Join(tc.fields, ",") {
				t.Fatalf("changes = %v, want %v\n%s", fields, tc.fields, reportText(rep))
			}
			if tc.first != OutcomeFailed {
				if drep.Blocks[0].Outcome != rep.Blocks[0].Outcome || len(drep.Blocks[0].Changes) != len(rep.Blocks[0].Changes) {
					t.Fatalf("dry run disagrees with the real run:\n%s\n%s", reportText(drep), reportText(rep))
				}
			} else if rep.Blocks[0].Error == "" {
				t.Fatal("failed without an error")
			}
			for _, c := range tc.checks {
				c(t, dir, rep)
			}
			if tc.noAgain {
				return
			}
			again := apply(t, cfg, opts)
			wantOutcomes(t, again, OutcomeOK)
			if len(again.Blocks[0].Changes) != 0 {
				t.Fatalf("second apply changed: %+v", again.Blocks[0].Changes)
			}
		})
	}
}

// snapshot describes every path under dir with its mode and content.
func snapshot(t *testing.T, dir string) string {
	t.Helper()
	var b strings.Builder
	filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		fmt.Fprintf(&b, "%s %v", p, info.Mode())
		if info.Mode().IsRegular() {
			data, _ := os.ReadFile(p)
			fmt.Fprintf(&b, " %q", data)
		}
		b.WriteByte('\n')
		return nil
	})
	return b.String()
}

func TestFileDiffReported(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "conf")
	os.WriteFile(p, []byte("a = 1\nb = 2\nc = 3\n"), 0o644)
	cfg := parse(t, fmt.Sprintf("[[file]]\npath = %q\ncontent = \"a = 1\\nb = 20\\nc = 3\\n\"\n", p), nil)
	rep := apply(t, cfg, Options{})
	c := findChange(t, rep, 0, "content")
	want := fmt.Sprintf("--- %s\n+++ %s\n@@ -1,3 +1,3 @@\n a = 1\n-b = 2\n+b = 20\n c = 3\n", p, p)
	if c.Diff != want {
		t.Fatalf("diff:\n%s\nwant:\n%s", c.Diff, want)
	}
	if !strings.HasPrefix(c.Old, "18 bytes, sha256 ") || !strings.HasPrefix(c.New, "19 bytes, sha256 ") {
		t.Fatalf("summaries: %q → %q", c.Old, c.New)
	}
	// Binary content is noted, not diffed.
	cfg = parse(t, fmt.Sprintf("[[file]]\npath = %q\nsource = \"bin\"\n", p), map[string][]byte{"bin": {0, 1, 2}})
	rep = apply(t, cfg, Options{})
	if c := findChange(t, rep, 0, "content"); !strings.HasPrefix(c.Diff, "binary content differs") {
		t.Fatalf("binary diff: %q", c.Diff)
	}
}

func TestFileAtomicLeavesNoTemp(t *testing.T) {
	dir := t.TempDir()
	cfg := parse(t, fmt.Sprintf("[[file]]\npath = \"%s/a\"\ncontent = \"x\"\n", dir), nil)
	apply(t, cfg, Options{})
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 || entries[0].Name() != "a" {
		t.Fatalf("directory holds %v", entries)
	}
}

func TestFileOwnership(t *testing.T) {
	needRoot(t)
	dir := t.TempDir()
	p := filepath.Join(dir, "owned")
	cfg := parse(t, fmt.Sprintf("[[file]]\npath = %q\ncontent = \"x\"\nowner = \"65534\"\ngroup = \"65534\"\nperms = \"2750\"\n", p), nil)
	rep := apply(t, cfg, Options{})
	wantOutcomes(t, rep, OutcomeChanged)
	st, _ := os.Stat(p)
	s := st.Sys().(*syscall.Stat_t)
	if s.Uid != 65534 || s.Gid != 65534 || s.Mode&0o7777 != 0o2750 {
		t.Fatalf("owner %d:%d mode %04o", s.Uid, s.Gid, s.Mode&0o7777)
	}
	wantOutcomes(t, apply(t, cfg, Options{}), OutcomeOK)

	// Changing only the owner of an existing file reports old and new.
	os.Chown(p, 0, 65534)
	os.Chmod(p, 0o750)
	syscall.Chmod(p, 0o2750)
	rep = apply(t, cfg, Options{})
	wantOutcomes(t, rep, OutcomeChanged)
	if c := findChange(t, rep, 0, "owner"); c.Old != "root" || c.New != "65534" {
		t.Fatalf("owner change %+v", c)
	}
	if modeOf(t, p) != 0o2750 {
		t.Fatalf("setgid bit lost by chown: %04o", modeOf(t, p))
	}

	// An unknown owner fails the real run; a dry run reports it would change.
	cfg = parse(t, fmt.Sprintf("[[file]]\npath = %q\nowner = \"hpttest-nosuchuser\"\n", p), nil)
	wantOutcomes(t, apply(t, cfg, Options{DryRun: true}), OutcomeChanged)
	wantOutcomes(t, apply(t, cfg, Options{}), OutcomeFailed)
}
