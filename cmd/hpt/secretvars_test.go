package main

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseSecretVars(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "pw")
	if err := os.WriteFile(file, []byte("from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"DB_PW": "from-env"}
	a := &app{stdin: strings.NewReader("from-stdin"), getenv: func(k string) string { return env[k] }}
	got, err := a.parseSecretVars([]string{"f=@" + file, "s=@-", "e=env:DB_PW"}, map[string]string{"user": "u"})
	if err != nil {
		t.Fatal(err)
	}
	// A file's value is taken as it is, final newline included.
	if got["f"] != "from-file\n" || got["s"] != "from-stdin" || got["e"] != "from-env" || len(got) != 3 {
		t.Fatalf("parsed %q", got)
	}
	for _, tc := range []struct {
		args []string
		vars map[string]string
		want string
	}{
		{[]string{"pw=literal-value"}, nil, "never the command line"},
		{[]string{"a=@-", "b=@-"}, nil, "standard input is read once"},
		{[]string{"a=env:UNSET"}, nil, "UNSET is unset or empty"},
		{[]string{"user=env:DB_PW"}, map[string]string{"user": "u"}, "secret_vars[user]: also set in vars"},
		{[]string{"a=@" + file, "a=env:DB_PW"}, nil, "given twice"},
		{[]string{"=@" + file}, nil, "want NAME=@FILE"},
		{[]string{"a=@" + filepath.Join(dir, "missing")}, nil, "no such file"},
	} {
		a := &app{stdin: strings.NewReader(""), getenv: func(k string) string { return env[k] }}
		_, err := a.parseSecretVars(tc.args, tc.vars)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want %q", tc.args, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "literal-value") {
			t.Errorf("%q: the error carries the value: %v", tc.args, err)
		}
		var ue usageError
		if strings.Contains(tc.want, "no such file") != !errors.As(err, &ue) {
			t.Errorf("%q: usage error %v, want %v", tc.args, errors.As(err, &ue), !strings.Contains(tc.want, "no such file"))
		}
	}
}
