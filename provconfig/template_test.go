package provconfig

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

// renderScript renders the script of the config's only block, an exec.
func renderScript(t *testing.T, script string, facts Facts, vars map[string]string) (string, error) {
	t.Helper()
	cfg := parse(t, fmt.Sprintf("[vars]\nset = \"from-config\"\n\n[[exec]]\nscript = %q\n", script), nil)
	return cfg.Blocks[0].(*ExecBlock).RenderScript(cfg.TemplateData(facts, vars))
}

// The optional idioms the docs recommend work on a var or label that is
// not set, and see the value when it is.
func TestTemplateOptionalValues(t *testing.T) {
	web := Facts{Name: "web-1", Labels: map[string]string{"role": "web"}}
	bare := Facts{Name: "db-1"}
	for _, tc := range []struct {
		script      string
		facts       Facts
		vars        map[string]string
		want        string
		description string
	}{
		{"{{ with .Target.Labels.role }}{{ . }}{{ else }}none{{ end }}", bare, nil, "none", "with, label missing"},
		{"{{ with .Target.Labels.role }}{{ . }}{{ else }}none{{ end }}", web, nil, "web", "with, label set"},
		{"{{ if .Vars.x }}x={{ .Vars.x }}{{ else }}no x{{ end }}", bare, nil, "no x", "if, var missing"},
		{"{{ if .Vars.x }}x={{ .Vars.x }}{{ else }}no x{{ end }}", bare, map[string]string{"x": "1"}, "x=1", "if, job var set"},
		{"{{ .Vars.x | default \"d\" }}", bare, nil, "d", "piped default, missing"},
		{"{{ default \"d\" .Vars.x }}", bare, map[string]string{"x": "v"}, "v", "default, set"},
		{"{{ .Vars.set | default \"d\" }}", bare, nil, "from-config", "default, config var"},
		{"{{ or .Target.Labels.role \"none\" }}", bare, nil, "none", "or, missing"},
		{"{{ if eq .Target.Labels.role \"web\" }}w{{ else }}other{{ end }}", bare, nil, "other", "eq, missing"},
		{"{{ range .Vars.list }}x{{ else }}empty{{ end }}", bare, nil, "empty", "range, missing"},
		{"{{ $r := .Target.Labels.role }}{{ if $r }}{{ $r }}{{ else }}none{{ end }}", bare, nil, "none", "variable, missing"},
	} {
		got, err := renderScript(t, tc.script, tc.facts, tc.vars)
		if err != nil || got != tc.want {
			t.Errorf("%s: %s rendered %q, %v; want %q", tc.description, tc.script, got, err, tc.want)
		}
	}
}

// Printing a var or label that is not set is an error naming it and its
// line, not an empty string written to the host.
func TestTemplatePrintingMissingValueFails(t *testing.T) {
	for _, tc := range []struct {
		script string
		line   int
		want   string
	}{
		{"echo {{ .Vars.missing }}", 1, `var "missing" is not set`},
		{"echo hi\necho {{ .Target.Labels.role }}", 2, `label "role" is not set`},
		{"{{ with .Vars }}\n\n{{ .nope }}{{ end }}", 3, `{{ .nope }} has no value`},
		{"{{ if true }}\n{{ .Vars.a | printf \"%s\" }}{{ end }}", 2, `var "a" is not set`},
		{"{{ printf \"%s-%s\" .Target.Name .Vars.b }}", 1, `var "b" is not set`},
		{"{{ printf \"%s\" (or .Vars.c .Vars.d) }}", 1, `{{ or .Vars.c .Vars.d }} has no value`},
		{"{{ $r := .Target.Labels.role }}{{ $r }}", 1, `{{ $r }} has no value`},
	} {
		got, err := renderScript(t, tc.script, Facts{Name: "web-1"}, nil)
		var me *MissingValueError
		if !errors.As(err, &me) || me.Line != tc.line || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q rendered %q, error %v; want a missing value at line %d: %s", tc.script, got, err, tc.line, tc.want)
		}
	}
	// Other mistakes stay errors too.
	if _, err := renderScript(t, "{{ .Target.Nmae }}", Facts{Name: "web-1"}, nil); err == nil || !strings.Contains(err.Error(), "Nmae") {
		t.Errorf("a misspelt field rendered: %v", err)
	}
}

// CheckTemplates renders every template for one target and names the
// block of each failure.
func TestCheckTemplates(t *testing.T) {
	cfg := parse(t, `[[file]]
path = "/tmp/a"
content = "ok {{ .Target.Name }}"
template = true

[[exec]]
cmd = "true"

[[exec]]
script = """
echo {{ with .Target.Labels.role }}{{ . }}{{ else }}none{{ end }}
echo {{ .Vars.port }}
"""

[[file]]
path = "/tmp/b"
source = "b.tmpl"
template = true
`, map[string][]byte{"b.tmpl": []byte("{{ .Target.Labels.zone }}")})
	if err := CheckTemplates(cfg, Facts{Name: "web-1", Labels: map[string]string{"zone": "a"}}, map[string]string{"port": "80"}); err != nil {
		t.Fatalf("all values set: %v", err)
	}
	err := CheckTemplates(cfg, Facts{Name: "web-1"}, nil)
	var errs ConfigErrors
	if !errors.As(err, &errs) || len(errs) != 2 {
		t.Fatalf("CheckTemplates = %v, want two errors", err)
	}
	for i, want := range []string{
		`provision.toml:9: exec[2].script: template: line 2: {{ .Vars.port }}: var "port" is not set`,
		`provision.toml:15: file[2].source: template: line 1: {{ .Target.Labels.zone }}: label "zone" is not set`,
	} {
		if !strings.HasPrefix(errs[i].Error(), want) {
			t.Errorf("error %d = %q, want it to start %q", i, errs[i], want)
		}
	}
}
