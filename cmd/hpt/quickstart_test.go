package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// docBlock is a fenced `sh` block of a guide and the `text` block that
// follows it, if any: the output to expect.
type docBlock struct {
	line   int
	script string
	want   []string
}

// parseGuide returns the sh blocks of a Markdown guide. Other fences
// (shell, toml, ...) are for reading only.
func parseGuide(t *testing.T, path string) []docBlock {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var blocks []docBlock
	var fence string
	var body []string
	start := 0
	sc := bufio.NewScanner(bytes.NewReader(b))
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		switch {
		case fence == "" && strings.HasPrefix(line, "```"):
			fence, body, start = strings.TrimPrefix(line, "```"), nil, n
		case fence != "" && line == "```":
			switch fence {
			case "sh":
				blocks = append(blocks, docBlock{line: start, script: strings.Join(body, "\n")})
			case "text":
				if len(blocks) > 0 && blocks[len(blocks)-1].want == nil {
					blocks[len(blocks)-1].want = body
				}
			}
			fence = ""
		case fence != "":
			body = append(body, line)
		default:
			// Prose between a sh block and its text block is fine; a
			// second sh block is not expected output for the first.
		}
	}
	return blocks
}

// linePattern turns an expected line into a regexp: "…" matches anything,
// runs of spaces match any run of white space (tables are aligned to their
// content).
func linePattern(want string) *regexp.Regexp {
	var b strings.Builder
	b.WriteString("^")
	for i, part := range strings.Split(strings.TrimSpace(want), "…") {
		if i > 0 {
			b.WriteString(".*")
		}
		b.WriteString(spaceRun.ReplaceAllString(regexp.QuoteMeta(part), `\s+`))
	}
	b.WriteString("$")
	return regexp.MustCompile(b.String())
}

var spaceRun = regexp.MustCompile(` +`)

// TestQuickstart runs docs/quickstart.md: its sh blocks in one shell, in a
// fresh directory, with its loopback ports swapped for free ones, and each
// block's output must contain the lines of the text block after it, in
// order.
func TestQuickstart(t *testing.T) {
	blocks := parseGuide(t, filepath.Join("..", "..", "docs", "quickstart.md"))
	if len(blocks) < 5 {
		t.Fatalf("docs/quickstart.md has %d sh blocks", len(blocks))
	}
	ports := map[string]string{}
	portRE := regexp.MustCompile(`127\.0\.0\.1:(\d{2,5})`)
	swap := func(s string) string {
		return portRE.ReplaceAllStringFunc(s, func(m string) string {
			p := portRE.FindStringSubmatch(m)[1]
			if p == "0" {
				return m
			}
			if _, ok := ports[p]; !ok {
				ports[p] = fmt.Sprint(freePort(t))
			}
			return "127.0.0.1:" + ports[p]
		})
	}
	var script strings.Builder
	script.WriteString("set -euo pipefail\nexec 2>&1\n")
	for i, b := range blocks {
		fmt.Fprintf(&script, "echo '@@@ %d'\n%s\n", i, swap(b.script))
		for j := range b.want {
			b.want[j] = swap(b.want[j])
		}
	}
	script.WriteString("echo '@@@ end'\n")

	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-c", script.String())
	cmd.Dir = dir
	cmd.Env = []string{"PATH=" + filepath.Dir(hptBin) + ":" + os.Getenv("PATH"), "HOME=" + dir}
	// The guide starts servers and agents in the background: one process
	// group, killed whole at the end.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	var out bytes.Buffer
	cmd.Stdout = &out
	err := cmd.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) })
	err = cmd.Wait()
	outputs := strings.Split(out.String(), "@@@ ")
	if err != nil || !strings.Contains(out.String(), "@@@ end") {
		t.Fatalf("the guide's commands failed (%v); output:\n%s", err, out.String())
	}
	got := map[int][]string{}
	for _, o := range outputs[1:] {
		head, rest, _ := strings.Cut(o, "\n")
		var i int
		if _, err := fmt.Sscan(head, &i); err == nil {
			got[i] = strings.Split(rest, "\n")
		}
	}
	for i, b := range blocks {
		lines := got[i]
		k := 0
		for _, want := range b.want {
			re := linePattern(want)
			for k < len(lines) && !re.MatchString(strings.TrimSpace(lines[k])) {
				k++
			}
			if k == len(lines) {
				t.Errorf("docs/quickstart.md:%d: output lacks %q (in order); it was:\n%s", b.line, want, strings.Join(lines, "\n"))
				break
			}
			k++
		}
	}
}
