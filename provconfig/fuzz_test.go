package provconfig

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"
)

// FuzzParse: Parse never panics, and every error carries a line within the
// config (checked strictly when the TOML itself is valid, where the line
// must come from the key positions).
func FuzzParse(f *testing.F) {
	seeds := []string{
		"",
		"failhard = true\npackages = [\"curl\"]\n",
		"[[file]]\npath = \"/a\"\ncontent = \"x\"\nperms = 0600\n",
		"[[file]]\npath = \"/a\"\ncontent = \"{{ .Vars.x }}\"\ntemplate = true\nperms = \"0640\"\nowner = \"root\"\n",
		"[[exec]]\nscript = \"\"\"\necho hi\n\"\"\"\nenv = { A = \"1\" }\ntimeout = 30\n",
		"exec = [{ cmd = \"true\" }, { cmd = 1 }]\n",
		"[[user]]\nname = \"bob\"\nssh_public_key = \"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBvL2Sj8wF3bcvjlCrJzYmmp4ZzAn5Y7fSyr4uLbd0Jq\"\n",
		"[[group]]\nname = \"ops\"\npasswordless_sudo = true\n[[service]]\nname = \"x\"\nstatus = \"up\"\n",
		"[[clone]]\nurl = \"u\"\ndest = \"/d\"\n[clone.x]\ny = 1\n[[clone]]\n\"a.b\".c = 1\n",
		"[file]\na = 1\n[[bogus]]\n",
		"a.b.c = 1\n[x.\"y\".z]\nq = [[1], [\n2]]\n",
	}
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	if names, err := filepath.Glob("../examples/*.toml"); err == nil {
		for _, n := range names {
			if data, err := os.ReadFile(n); err == nil {
				f.Add(data)
			}
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse(&Bundle{Name: "fuzz.toml", Config: data, Files: map[string][]byte{"f": []byte("x")}})
		if err == nil {
			if cfg == nil {
				t.Fatal("nil config without error")
			}
			for _, b := range cfg.Blocks {
				if b == nil || b.Line() < 1 {
					t.Fatalf("block %v has no line", b)
				}
			}
			return
		}
		if cfg != nil {
			t.Fatal("config returned with an error")
		}
		var ces ConfigErrors
		if !errors.As(err, &ces) || len(ces) == 0 {
			t.Fatalf("error is not ConfigErrors: %T %v", err, err)
		}
		var m map[string]any
		_, tomlErr := toml.Decode(string(data), &m)
		lines := strings.Count(string(data), "\n") + 1
		for _, e := range ces {
			if e.Line < 1 {
				t.Fatalf("error without a line: %v", e)
			}
			if tomlErr == nil && e.Line > lines {
				t.Fatalf("error line %d past the end (%d lines): %v", e.Line, lines, e)
			}
		}
	})
}
