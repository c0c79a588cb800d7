package provision

import (
	"cmp"
	"strings"
	"testing"
)

// fakeSystemd answers systemctl for one unit.
type fakeSystemd struct {
	active  string // is-active output
	enabled string // is-enabled output
	load    string // LoadState; "" for "loaded"
}

func (f *fakeSystemd) handle(c Command) (CommandResult, error) {
	if c.Name == "systemctl" && len(c.Args) == 4 && c.Args[0] == "show" && c.Args[1] == "--property=LoadState" && c.Args[2] == "--value" {
		return CommandResult{Stdout: []byte(cmp.Or(f.load, "loaded") + "\n")}, nil
	}
	if c.Name != "systemctl" || len(c.Args) != 2 {
		return exit(127), nil
	}
	switch c.Args[0] {
	case "is-active":
		code := 3
		if f.active == "active" {
			code = 0
		}
		return CommandResult{Stdout: []byte(f.active + "\n"), ExitCode: code}, nil
	case "is-enabled":
		code := 1
		if f.enabled == "enabled" {
			code = 0
		}
		return CommandResult{Stdout: []byte(f.enabled + "\n"), ExitCode: code}, nil
	case "start", "restart":
		f.active = "active"
	case "stop":
		f.active = "inactive"
	case "enable":
		f.enabled = "enabled"
	case "disable":
		f.enabled = "disabled"
	}
	return CommandResult{}, nil
}

func TestServiceBlocks(t *testing.T) {
	cases := []struct {
		name            string
		config          string
		active, enabled string
		want            Outcome
		commands        []string
		again           Outcome
	}{
		{"start and enable", "status = \"started\"\nenabled = true", "inactive", "disabled", OutcomeChanged,
			[]string{"systemctl is-enabled nginx", "systemctl enable nginx", "systemctl is-active nginx", "systemctl start nginx"}, OutcomeOK},
		{"already running", "status = \"started\"\nenabled = true", "active", "enabled", OutcomeOK,
			[]string{"systemctl is-enabled nginx", "systemctl is-active nginx"}, OutcomeOK},
		{"stop and disable", "status = \"stopped\"\nenabled = false", "active", "enabled", OutcomeChanged,
			[]string{"systemctl is-enabled nginx", "systemctl disable nginx", "systemctl is-active nginx", "systemctl stop nginx"}, OutcomeOK},
		{"already stopped", "status = \"stopped\"", "failed", "enabled", OutcomeOK,
			[]string{"systemctl is-active nginx"}, OutcomeOK},
		{"restart always changes", "status = \"restarted\"", "active", "enabled", OutcomeChanged,
			[]string{"systemctl is-active nginx", "systemctl restart nginx"}, OutcomeChanged},
		{"static unit counts as enabled", "enabled = true", "active", "static", OutcomeOK,
			[]string{"systemctl is-enabled nginx"}, OutcomeOK},
		{"enabled only", "enabled = true", "inactive", "disabled", OutcomeChanged,
			[]string{"systemctl is-enabled nginx", "systemctl enable nginx"}, OutcomeOK},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			unit := &fakeSystemd{active: tc.active, enabled: tc.enabled}
			rec := &RecordingRunner{Handler: unit.handle}
			cfg := parse(t, "[[service]]\nname = \"nginx\"\n"+tc.config+"\n", nil)

			dry := apply(t, cfg, Options{Runner: rec, DryRun: true})
			wantOutcomes(t, dry, tc.want)
			for _, c := range rec.Commands() {
				if a := c.Args[0]; a != "is-active" && a != "is-enabled" && a != "show" {
					t.Fatalf("dry run ran %s", c)
				}
			}
			rec.Reset()

			rep := apply(t, cfg, Options{Runner: rec})
			wantOutcomes(t, rep, tc.want)
			equalLines(t, rec.Lines(), tc.commands)
			wantOutcomes(t, apply(t, cfg, Options{Runner: rec}), tc.again)
		})
	}
}

func TestServiceFailure(t *testing.T) {
	rec := &RecordingRunner{Handler: script{
		"systemctl is-active nosuch":  {Stdout: []byte("inactive\n"), ExitCode: 3},
		"systemctl start nosuch":      {Stderr: []byte("Failed to start nosuch.service: Unit nosuch.service not found.\n"), ExitCode: 5},
		"systemctl is-enabled nosuch": {Stderr: []byte("Failed to get unit file state\n"), ExitCode: 1},
	}.handler(t)}
	rep := apply(t, parse(t, "[[service]]\nname = \"nosuch\"\nstatus = \"started\"\n", nil), Options{Runner: rec})
	wantOutcomes(t, rep, OutcomeFailed)
	if e := rep.Blocks[0].Error; e != "systemctl start nosuch: exit status 5: Failed to start nosuch.service: Unit nosuch.service not found." {
		t.Fatalf("error %q", e)
	}
}

// A dry run asks systemd for the unit before it promises to start, restart
// or enable it: a unit that does not exist fails the dry run, as it fails
// the real run.
func TestServiceDryRunMissingUnit(t *testing.T) {
	for _, tc := range []struct {
		config, load string
		want         Outcome
		msg          string
	}{
		{"status = \"started\"", "not-found", OutcomeFailed, "the real run would fail: systemd has no unit nosuch (LoadState=not-found)"},
		{"enabled = true", "not-found", OutcomeFailed, "the real run would fail: systemd has no unit nosuch (LoadState=not-found)"},
		{"status = \"restarted\"", "masked", OutcomeFailed, "the real run would fail: unit nosuch is masked (LoadState=masked)"},
		{"status = \"stopped\"\nenabled = false", "not-found", OutcomeOK, ""}, // nothing to do, in either run
		{"status = \"started\"", "loaded", OutcomeChanged, ""},
	} {
		unit := &fakeSystemd{active: "inactive", enabled: "disabled", load: tc.load}
		rep := apply(t, parse(t, "[[service]]\nname = \"nosuch\"\n"+tc.config+"\n", nil), Options{Runner: &RecordingRunner{Handler: unit.handle}, DryRun: true})
		wantOutcomes(t, rep, tc.want)
		if rep.Blocks[0].Error != tc.msg {
			t.Errorf("%s with LoadState=%s: error %q, want %q", tc.config, tc.load, rep.Blocks[0].Error, tc.msg)
		}
	}

	// After a block that would change the host (a package that brings the
	// unit), a missing unit is a note, not a failure.
	unit := &fakeSystemd{active: "inactive", enabled: "disabled", load: "not-found"}
	cfg := parse(t, "[[file]]\npath = \""+t.TempDir()+"/f\"\ncontent = \"x\"\n\n[[service]]\nname = \"nosuch\"\nstatus = \"started\"\n", nil)
	rep := apply(t, cfg, Options{Runner: &RecordingRunner{Handler: unit.handle}, DryRun: true})
	wantOutcomes(t, rep, OutcomeChanged, OutcomeChanged)
	if c := findChange(t, rep, 1, "precondition"); !strings.Contains(c.New, "systemd has no unit nosuch") {
		t.Fatalf("precondition change %+v", c)
	}
}

// With the real systemctl, the dry run of starting a unit that exists
// nowhere fails: systemd reports it not found, or (no systemd running) the
// question cannot be asked, and either way the real run's start would fail.
func TestServiceDryRunMissingUnitRealSystemctl(t *testing.T) {
	needTool(t, "systemctl", "systemd")
	cfg := parse(t, "[[service]]\nname = \"hpt-test-no-such-unit\"\nstatus = \"started\"\n", nil)
	rep := apply(t, cfg, Options{DryRun: true})
	wantOutcomes(t, rep, OutcomeFailed)
	if e := rep.Blocks[0].Error; !strings.Contains(e, "the real run would fail") {
		t.Fatalf("error %q", e)
	}
}
