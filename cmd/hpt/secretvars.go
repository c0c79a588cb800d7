package main

import (
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/hpt-dev/hpt/internal/secretvars"
)

// parseSecretVars reads --secret-var NAME=@FILE, NAME=@- (standard input,
// once) and NAME=env:VAR. A value written on the command line itself is
// refused: it would sit in the shell's history and in ps. Values are taken
// as they are, a file's final newline included. Errors never carry a
// value.
func (a *app) parseSecretVars(list []string, vars map[string]string) (map[string]string, error) {
	out := map[string]string{}
	stdinUsed := false
	for _, item := range list {
		name, src, ok := strings.Cut(item, "=")
		if !ok || name == "" {
			return nil, usagef("--secret-var %.40q: want NAME=@FILE, NAME=@- or NAME=env:VAR", name)
		}
		if _, dup := out[name]; dup {
			return nil, usagef("--secret-var %s: given twice", name)
		}
		var v string
		switch {
		case src == "@-":
			if stdinUsed {
				return nil, usagef("--secret-var %s=@-: standard input is read once, by one --secret-var", name)
			}
			stdinUsed = true
			b, err := readCapped(a.stdin)
			if err != nil {
				return nil, fmt.Errorf("--secret-var %s: standard input: %w", name, err)
			}
			v = string(b)
		case strings.HasPrefix(src, "@"):
			f, err := os.Open(src[1:])
			if err != nil {
				return nil, fmt.Errorf("--secret-var %s: %w", name, err)
			}
			b, err := readCapped(f)
			f.Close()
			if err != nil {
				return nil, fmt.Errorf("--secret-var %s: %s: %w", name, src[1:], err)
			}
			v = string(b)
		case strings.HasPrefix(src, "env:"):
			env := src[len("env:"):]
			if env == "" {
				return nil, usagef("--secret-var %s=env:: name the environment variable", name)
			}
			if v = a.getenv(env); v == "" {
				return nil, usagef("--secret-var %s: environment variable %s is unset or empty", name, env)
			}
		default:
			return nil, usagef("--secret-var %s: the value must come from @FILE, @- (stdin) or env:VAR, never the command line (shell history, ps)", name)
		}
		out[name] = v
	}
	if err := secretvars.Check(out, vars); err != nil {
		return nil, usagef("--secret-var: %v", err)
	}
	return out, nil
}

// readCapped reads r up to just past the secret vars limit, so that an
// endless input ends in the size error instead of filling memory.
func readCapped(r io.Reader) ([]byte, error) {
	if r == nil {
		return nil, fmt.Errorf("no input")
	}
	return io.ReadAll(io.LimitReader(r, secretvars.MaxSize+1))
}
