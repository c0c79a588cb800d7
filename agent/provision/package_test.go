package provision

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
)

// fakePackages answers dpkg-query/apt-get or rpm/dnf like a host with the
// given packages installed; installs succeed unless the name is in broken.
type fakePackages struct {
	installed   map[string]string // name → version
	broken      map[string]bool
	needsUpdate bool // apt-get install fails until apt-get update ran
}

func (f *fakePackages) handle(c Command) (CommandResult, error) {
	switch c.Name {
	case "dpkg-query", "rpm":
		names := c.Args[2:]
		if c.Name == "rpm" {
			names = c.Args[3:]
		}
		var out, errOut strings.Builder
		code := 0
		for _, n := range names {
			v, ok := f.installed[n]
			switch {
			case ok && c.Name == "dpkg-query":
				fmt.Fprintf(&out, "%s\tinstall ok installed\t%s\n", n, v)
			case ok:
				fmt.Fprintf(&out, "%s\t%s\n", n, v)
			case c.Name == "dpkg-query":
				fmt.Fprintf(&errOut, "dpkg-query: no packages found matching %s\n", n)
				code = 1
			default:
				fmt.Fprintf(&out, "package %s is not installed\n", n)
				code++
			}
		}
		return CommandResult{Stdout: []byte(out.String()), Stderr: []byte(errOut.String()), ExitCode: code}, nil
	case "apt-get", "dnf", "yum":
		switch c.Args[0] {
		case "update":
			f.needsUpdate = false
			return out("Reading package lists...\n"), nil
		case "install":
			if f.needsUpdate {
				return CommandResult{Stderr: []byte("E: Unable to locate package\n"), ExitCode: 100}, nil
			}
			for _, a := range c.Args[1:] {
				if strings.HasPrefix(a, "-") || strings.HasPrefix(a, "Dpkg::") {
					continue
				}
				if f.broken[a] {
					return CommandResult{Stderr: []byte("E: broken " + a + "\n"), ExitCode: 100}, nil
				}
				f.installed[a] = "1.0"
			}
			return out("installed\n"), nil
		case "remove":
			for _, a := range c.Args[1:] {
				delete(f.installed, a)
			}
			return out("removed\n"), nil
		}
	}
	return CommandResult{ExitCode: 127}, errors.New("unexpected command " + c.String())
}

const aptInstall = "apt-get install -y -q -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold"

func TestPackageBlocks(t *testing.T) {
	cases := []struct {
		name      string
		pm        string
		config    string
		installed map[string]string
		broken    []string
		stale     bool
		want      Outcome
		commands  []string
		changes   []Change
	}{
		{
			name: "apt installs only what is missing", pm: "apt",
			config:    "packages = [\"curl\", \"git\"]\n",
			installed: map[string]string{"git": "2.39"},
			want:      OutcomeChanged,
			commands: []string{
				"dpkg-query -W '-f=${Package}\\t${Status}\\t${Version}\\n' curl git",
				aptInstall + " curl",
				"dpkg-query -W '-f=${Package}\\t${Status}\\t${Version}\\n' curl",
			},
			changes: []Change{{Field: "curl", Old: "absent", New: "installed 1.0"}},
		},
		{
			name: "apt nothing to do", pm: "apt",
			config:    "[[package]]\nname = \"curl\"\n",
			installed: map[string]string{"curl": "7.88"},
			want:      OutcomeOK,
			commands:  []string{"dpkg-query -W '-f=${Package}\\t${Status}\\t${Version}\\n' curl"},
		},
		{
			name: "apt remove", pm: "apt",
			config:    "[[package]]\nname = \"telnet\"\nstate = \"absent\"\n",
			installed: map[string]string{"telnet": "0.17"},
			want:      OutcomeChanged,
			commands: []string{
				"dpkg-query -W '-f=${Package}\\t${Status}\\t${Version}\\n' telnet",
				"apt-get remove -y -q telnet",
				"dpkg-query -W '-f=${Package}\\t${Status}\\t${Version}\\n' telnet",
			},
			changes: []Change{{Field: "telnet", Old: "installed 0.17", New: "absent"}},
		},
		{
			name: "apt remove absent", pm: "apt",
			config:   "[[package]]\nname = \"telnet\"\nstate = \"absent\"\n",
			want:     OutcomeOK,
			commands: []string{"dpkg-query -W '-f=${Package}\\t${Status}\\t${Version}\\n' telnet"},
		},
		{
			name: "apt refreshes stale lists once", pm: "apt",
			config: "[[package]]\nname = \"jq\"\n",
			stale:  true,
			want:   OutcomeChanged,
			commands: []string{
				"dpkg-query -W '-f=${Package}\\t${Status}\\t${Version}\\n' jq",
				aptInstall + " jq",
				"apt-get update -q",
				aptInstall + " jq",
				"dpkg-query -W '-f=${Package}\\t${Status}\\t${Version}\\n' jq",
			},
			changes: []Change{{Field: "jq", Old: "absent", New: "installed 1.0"}},
		},
		{
			name: "apt failure", pm: "apt",
			config: "[[package]]\nname = \"bad\"\n",
			broken: []string{"bad"},
			want:   OutcomeFailed,
			commands: []string{
				"dpkg-query -W '-f=${Package}\\t${Status}\\t${Version}\\n' bad",
				aptInstall + " bad",
				"apt-get update -q",
				aptInstall + " bad",
			},
			changes: []Change{{Field: "bad", Old: "absent", New: "installed"}},
		},
		{
			name: "dnf", pm: "dnf",
			config:    "packages = [\"httpd\", \"vim-enhanced\"]\n",
			installed: map[string]string{"vim-enhanced": "9.0-1.el9"},
			want:      OutcomeChanged,
			commands: []string{
				"rpm -q --qf '%{NAME}\\t%{VERSION}-%{RELEASE}\\n' httpd vim-enhanced",
				"dnf install -y httpd",
				"rpm -q --qf '%{NAME}\\t%{VERSION}-%{RELEASE}\\n' httpd",
			},
			changes: []Change{{Field: "httpd", Old: "absent", New: "installed 1.0"}},
		},
		{
			name: "yum remove", pm: "yum",
			config:    "[[package]]\nname = \"httpd\"\nstate = \"absent\"\n",
			installed: map[string]string{"httpd": "2.4"},
			want:      OutcomeChanged,
			commands: []string{
				"rpm -q --qf '%{NAME}\\t%{VERSION}-%{RELEASE}\\n' httpd",
				"yum remove -y httpd",
				"rpm -q --qf '%{NAME}\\t%{VERSION}-%{RELEASE}\\n' httpd",
			},
			changes: []Change{{Field: "httpd", Old: "installed 2.4", New: "absent"}},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			host := &fakePackages{installed: map[string]string{}, broken: map[string]bool{}, needsUpdate: tc.stale}
			for k, v := range tc.installed {
				host.installed[k] = v
			}
			for _, b := range tc.broken {
				host.broken[b] = true
			}
			rec := &RecordingRunner{Handler: host.handle}
			cfg := parse(t, tc.config, nil)

			dry := apply(t, cfg, Options{Runner: rec, PackageManager: tc.pm, DryRun: true})
			if n := len(rec.Commands()); n != 1 {
				t.Fatalf("dry run ran more than the query: %v", rec.Lines())
			}
			rec.Reset()

			rep := apply(t, cfg, Options{Runner: rec, PackageManager: tc.pm})
			wantOutcomes(t, rep, tc.want)
			equalLines(t, rec.Lines(), tc.commands)
			if got := rep.Blocks[0].Changes; !slices.Equal(got, tc.changes) && !(len(got) == 0 && len(tc.changes) == 0) {
				t.Fatalf("changes %+v, want %+v", got, tc.changes)
			}
			if tc.want != OutcomeFailed && dry.Blocks[0].Outcome != tc.want {
				t.Fatalf("dry run outcome %s, want %s", dry.Blocks[0].Outcome, tc.want)
			}
			for _, c := range rec.Commands() {
				if c.Name == "apt-get" && !slices.Contains(c.Env, "DEBIAN_FRONTEND=noninteractive") {
					t.Fatalf("apt-get without DEBIAN_FRONTEND: %+v", c)
				}
			}
			if tc.want == OutcomeFailed {
				return
			}
			rec.Reset()
			wantOutcomes(t, apply(t, cfg, Options{Runner: rec, PackageManager: tc.pm}), OutcomeOK)
			if len(rec.Commands()) != 1 {
				t.Fatalf("second apply ran %v", rec.Lines())
			}
		})
	}
}

func TestDetectPackageManager(t *testing.T) {
	all := []string{"apt-get", "dpkg-query", "dnf", "yum", "rpm"}
	cases := []struct {
		name      string
		osRelease string
		present   []string
		want      string
	}{
		{"debian", "ID=debian\nVERSION_ID=\"12\"\n", all, "apt"},
		{"ubuntu via ID_LIKE", "ID=pop\nID_LIKE=\"ubuntu debian\"\n", all, "apt"},
		{"rhel", "ID=\"rhel\"\nID_LIKE=\"fedora\"\n", all, "dnf"},
		{"old centos", "ID=\"centos\"\n", []string{"yum", "rpm"}, "yum"},
		{"rocky via ID_LIKE", "ID=rocky\nID_LIKE=\"rhel centos fedora\"\n", []string{"dnf", "rpm"}, "dnf"},
		{"unknown os, apt present", "ID=mystery\n", []string{"apt-get", "dpkg-query"}, "apt"},
		{"no os-release, dnf present", "", []string{"dnf", "rpm"}, "dnf"},
		{"debian id but no apt", "ID=debian\n", []string{"dnf", "rpm"}, "dnf"},
		{"nothing", "ID=alpine\n", nil, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			look := func(name string) (string, error) {
				if slices.Contains(tc.present, name) {
					return "/usr/bin/" + name, nil
				}
				return "", errors.New("not found")
			}
			got, err := detectPackageManager([]byte(tc.osRelease), look)
			if got != tc.want {
				t.Fatalf("got %q (%v), want %q", got, err, tc.want)
			}
			if tc.want == "" && !errors.Is(err, ErrNoPackageManager) {
				t.Fatalf("err %v", err)
			}
		})
	}
}

// TestPackageQueryReal runs the real query on a Debian host: a package that
// is certainly installed is reported installed, so nothing is run.
func TestPackageQueryReal(t *testing.T) {
	needTool(t, "dpkg-query", "dpkg")
	cfg := parse(t, "[[package]]\nname = \"dpkg\"\n\n[[package]]\nname = \"hpttest-no-such-package\"\nstate = \"absent\"\n", nil)
	rep := apply(t, cfg, Options{PackageManager: "apt"})
	wantOutcomes(t, rep, OutcomeOK, OutcomeOK)
}
