package deploy

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hpt-dev/hpt/internal/testenv"
)

func TestUnits(t *testing.T) {
	bin, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	var files []string
	for _, name := range UnitNames() {
		file, text, err := Unit(name, bin)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(text), DefaultBinary) {
			t.Errorf("%s still names %s after --bin %s", file, DefaultBinary, bin)
		}
		if strings.HasSuffix(file, ".service") && !strings.Contains(string(text), "ExecStart="+bin+" ") {
			t.Errorf("%s: no ExecStart with %s", file, bin)
		}
		p := filepath.Join(dir, file)
		if err := os.WriteFile(p, text, 0o644); err != nil {
			t.Fatal(err)
		}
		files = append(files, p)
	}
	if _, _, err := Unit("nope", ""); err == nil || !strings.Contains(err.Error(), "agent, agent-socket, server") {
		t.Errorf("unknown unit: %v", err)
	}

	// systemd-analyze verify reports unknown keys and bad values as
	// warnings with exit status 0: any output is a failure.
	testenv.NeedTool(t, "systemd-analyze", "systemd")
	// A machine where systemd-analyze complains about a trivial unit (no
	// systemd state to read, say) cannot judge ours.
	probe := filepath.Join(dir, "probe.service")
	if err := os.WriteFile(probe, []byte("[Service]\nExecStart="+bin+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("systemd-analyze", "verify", "--man=no", probe).CombinedOutput(); err != nil || len(out) > 0 {
		testenv.Missing(t, "systemd-analyze cannot verify even a trivial unit here: %v %s", err, out)
	}
	out, err := exec.Command("systemd-analyze", append([]string{"verify", "--man=no"}, files...)...).CombinedOutput()
	if err != nil || len(out) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
}

// TestDockerCompose validates the top-level docker-compose.yml with
// Debian's docker-compose, which needs no engine for `config`.
func TestDockerCompose(t *testing.T) {
	testenv.NeedTool(t, "docker-compose", "docker-compose")
	out, err := exec.Command("docker-compose", "-f", filepath.Join("..", "docker-compose.yml"), "config", "-q").CombinedOutput()
	if err != nil || len(out) > 0 {
		t.Fatalf("docker-compose config: %v\n%s", err, out)
	}
}
