package provconfig

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestLoadBundle(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"site.toml":    "[[file]]\npath = \"/a\"\nsource = \"files/a\"\n\n[[file]]\npath = \"/b\"\nsource = \"./files/b.tmpl\"\ntemplate = true\n\n[[file]]\npath = \"/c\"\nsource = \"files/a\"\n",
		"files/a":      "A",
		"files/b.tmpl": "{{ .Target.Name }}",
		"unrelated":    "not shipped",
	})
	b, err := LoadBundle(filepath.Join(dir, "site.toml"))
	if err != nil {
		t.Fatal(err)
	}
	if b.Name != "site.toml" || len(b.Files) != 2 || string(b.Files["files/a"]) != "A" || string(b.Files["./files/b.tmpl"]) != "{{ .Target.Name }}" {
		t.Fatalf("bundle %+v", b)
	}
	if _, err := Parse(b); err != nil {
		t.Fatal(err)
	}
}

func TestLoadBundleRefusesEscapes(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "config")
	writeFiles(t, root, map[string]string{
		"secret":              "s",
		"config/ok":           "ok",
		"config/site.toml":    "[[file]]\npath = \"/a\"\nsource = \"../secret\"\n\n[[file]]\npath = \"/b\"\nsource = \"/etc/passwd\"\n\n[[file]]\npath = \"/c\"\nsource = \"link/secret\"\n\n[[file]]\npath = \"/d\"\nsource = \"missing\"\n\n[[file]]\npath = \"/e\"\nsource = \"ok\"\n",
		"config/sub/.keep":    "",
		"config/not-a-source": "",
	})
	if err := os.Symlink(root, filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	_, err := LoadBundle(filepath.Join(dir, "site.toml"))
	var ces ConfigErrors
	if !errors.As(err, &ces) {
		t.Fatalf("err %T %v", err, err)
	}
	want := []struct {
		line  int
		field string
		msg   string
	}{
		{3, "file[1].source", "inside the config's directory"},
		{7, "file[2].source", "inside the config's directory"},
		{11, "file[3].source", "read source"},
		{15, "file[4].source", "no such file"},
	}
	if len(ces) != len(want) {
		t.Fatalf("errors:\n%v", err)
	}
	for i, w := range want {
		if ces[i].Line != w.line || ces[i].Field != w.field || !strings.Contains(ces[i].Msg, w.msg) {
			t.Errorf("error %d: %v, want line %d %s %q", i, ces[i], w.line, w.field, w.msg)
		}
	}
}

func TestLoadBundleLeavesSyntaxErrorsToParse(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"bad.toml": "[[file]\npath = \"/a\"\n"})
	b, err := LoadBundle(filepath.Join(dir, "bad.toml"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = Parse(b)
	var ce *ConfigError
	if !errors.As(err, &ce) || ce.Line != 1 || !strings.HasPrefix(err.Error(), "bad.toml:1: invalid TOML") {
		t.Fatalf("err %v", err)
	}
	if _, err := LoadBundle(filepath.Join(dir, "none.toml")); err == nil {
		t.Fatal("missing config loaded")
	}
}

// A source that cannot be read does not hide the config's other errors:
// Load reports them all, by line, and the missing source once.
func TestLoadReportsMissingSourceWithOtherErrors(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"site.toml": "[[file]]\npath = \"/a\"\nsource = \"missing\"\n\n[[file]]\npath = \"relative\"\ncontent = \"x\"\n\n[[service]]\nname = \"nginx\"\nstatus = \"up\"\n",
	})
	b, cfg, err := Load(filepath.Join(dir, "site.toml"))
	if b != nil || cfg != nil {
		t.Fatalf("Load returned a bundle or config with errors: %v %v", b, cfg)
	}
	var ces ConfigErrors
	if !errors.As(err, &ces) {
		t.Fatalf("err %T %v", err, err)
	}
	want := []struct {
		line  int
		field string
		msg   string
	}{
		{3, "file[1].source", `read source "missing"`},
		{6, "file[2].path", "absolute path"},
		{11, "service[1].status", `not "up"`},
	}
	if len(ces) != len(want) {
		t.Fatalf("got %d errors, want %d:\n%v", len(ces), len(want), err)
	}
	for i, w := range want {
		if ces[i].Line != w.line || ces[i].Field != w.field || !strings.Contains(ces[i].Msg, w.msg) {
			t.Errorf("error %d: %v, want line %d %s %q", i, ces[i], w.line, w.field, w.msg)
		}
	}

	// A good config loads and parses in one call.
	writeFiles(t, dir, map[string]string{"missing": "now here"})
	writeFiles(t, dir, map[string]string{"good.toml": "[[file]]\npath = \"/a\"\nsource = \"missing\"\n"})
	b, cfg, err = Load(filepath.Join(dir, "good.toml"))
	if err != nil || b == nil || cfg == nil || string(b.Files["missing"]) != "now here" {
		t.Fatalf("Load of a good config: %v, %v, %v", b, cfg, err)
	}
}
