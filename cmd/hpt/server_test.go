package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestDevPathHint: the dev banner tells how to install hpt when no hpt
// is on PATH (as after `go run ./cmd/hpt dev`), and says nothing when one is.
func TestDevPathHint(t *testing.T) {
	empty, bin := t.TempDir(), t.TempDir()
	if err := os.WriteFile(filepath.Join(bin, "hpt"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	env := func(path string) func(string) string {
		return func(k string) string {
			if k == "PATH" {
				return path
			}
			return ""
		}
	}
	if h := pathHint(env(empty)); !strings.Contains(h, "go install ./cmd/hpt") || !strings.Contains(h, "$(go env GOPATH)/bin") {
		t.Fatalf("no hpt on PATH: hint %q", h)
	}
	if h := pathHint(env(empty + string(os.PathListSeparator) + bin)); h != "" {
		t.Fatalf("hpt on PATH: hint %q, want none", h)
	}
}
