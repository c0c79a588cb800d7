package rpc_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hpt-dev/hpt/internal/testenv"
)

// TestGeneratedCodeIsFresh regenerates every .pb.go with the pinned
// generators into a temporary directory and compares it with what is
// committed, so that a .proto edited without `go generate ./...` fails.
func TestGeneratedCodeIsFresh(t *testing.T) {
	testenv.NeedTool(t, "protoc", "protobuf-compiler")
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	protos := []string{"events/events.proto", "fsm/state.proto", "rpc/api.proto", "rpc/agent.proto", "rpc/fleet.proto"}
	out := t.TempDir()
	gen := filepath.Join(root, "rpc", "gen")
	args := []string{"-I", root,
		"--plugin=protoc-gen-go=" + filepath.Join(gen, "protoc-gen-go"),
		"--plugin=protoc-gen-go-grpc=" + filepath.Join(gen, "protoc-gen-go-grpc"),
		"--go_out=" + out, "--go_opt=module=github.com/hpt-dev/hpt",
		"--go-grpc_out=" + out, "--go-grpc_opt=module=github.com/hpt-dev/hpt",
	}
	cmd := exec.Command("protoc", append(args, protos...)...)
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("protoc: %v\n%s", err, b)
	}
	n := 0
	err = filepath.WalkDir(out, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(out, p)
		want, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		got, err := os.ReadFile(filepath.Join(root, rel))
		if err != nil {
			t.Errorf("%s is generated but not committed: run go generate ./...", rel)
			return nil
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s differs from what its .proto generates: run go generate ./...", rel)
		}
		n++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n < len(protos) {
		t.Fatalf("protoc generated %d files for %s", n, strings.Join(protos, ", "))
	}
}
