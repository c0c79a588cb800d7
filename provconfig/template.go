package provconfig

import (
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/template"
	tparse "text/template/parse"
)

// Templates see a var or label that is not set as no value, so that the
// optional idioms work: {{ with .Target.Labels.role }}…{{ else }}none{{ end }},
// {{ if .Vars.x }}, {{ or .Vars.x "y" }}, {{ .Vars.x | default "y" }}. What
// a template prints must have a value, though: every printing action is
// checked on its way out (guardOutputs), so a plain {{ .Vars.missing }} is
// an error naming the var and the line, never an empty string or
// "<no value>" written to a host. The node renders every template against
// every target of a job at submission (CheckTemplates), so that error comes
// back to whoever submits the job instead of failing on the targets.

// valueFunc is the check guardOutputs appends to every printing pipeline.
const valueFunc = "hpt_value"

// maxRenderBytes bounds what one render may write: a template is a program
// from whoever submitted it, and the node renders it at submission.
const maxRenderBytes = 16 << 20

// MissingValueError is a template printing a var or label that is not set
// (or any expression without a value).
type MissingValueError struct {
	Line int    // 1-based, in the template's text
	Expr string // the printing pipeline as written, e.g. ".Vars.x"
}

func (e *MissingValueError) Error() string {
	what := fmt.Sprintf("{{ %s }} has no value", e.Expr)
	switch {
	case strings.HasPrefix(e.Expr, ".Vars.") && isIdent(e.Expr[len(".Vars."):]):
		what = fmt.Sprintf("{{ %s }}: var %q is not set", e.Expr, e.Expr[len(".Vars."):])
	case strings.HasPrefix(e.Expr, ".Target.Labels.") && isIdent(e.Expr[len(".Target.Labels."):]):
		what = fmt.Sprintf("{{ %s }}: label %q is not set", e.Expr, e.Expr[len(".Target.Labels."):])
	}
	return fmt.Sprintf("line %d: %s (for an optional one use {{ with }}, {{ if }}, or | default \"…\")", e.Line, what)
}

func isIdent(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if !(r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') {
			return false
		}
	}
	return true
}

func templateFuncs() template.FuncMap {
	return template.FuncMap{
		// default "y" X is X unless X is missing or empty, then "y".
		"default": func(def string, v any) any {
			if v == nil || v == "" {
				return def
			}
			return v
		},
		valueFunc: func(line int, expr string, v any) (any, error) {
			// A missing map entry reaches a function as nil; vars,
			// labels and the target's name are strings, never nil.
			if v == nil {
				return nil, &MissingValueError{Line: line, Expr: expr}
			}
			return v, nil
		},
	}
}

// parseTemplate parses a template the way configs use them.
func parseTemplate(name, text string) (*template.Template, error) {
	t, err := template.New(name).Option("missingkey=default").Funcs(templateFuncs()).Parse(text)
	if err != nil {
		return nil, err
	}
	for _, d := range t.Templates() {
		if d.Tree != nil {
			guardOutputs(d.Tree, d.Tree.Root, text)
		}
	}
	return t, nil
}

// guardOutputs makes every printing action in l check, where a missing
// value could get into what it prints, that there is one: the pipeline's
// result, each value piped into a function, and each data argument of a
// function (printf "%s" .Vars.x). Functions made for optional values
// (default, or, and, not, comparisons) are left to see a missing value.
func guardOutputs(tr *tparse.Tree, l *tparse.ListNode, text string) {
	if l == nil {
		return
	}
	for _, n := range l.Nodes {
		switch n := n.(type) {
		case *tparse.ActionNode:
			if len(n.Pipe.Decl) > 0 {
				// {{ $x := … }} prints nothing.
				continue
			}
			pos := n.Pipe.Position()
			g := guard{tr: tr, line: 1 + strings.Count(text[:min(int(pos), len(text))], "\n")}
			g.pipe(n.Pipe, true)
		case *tparse.IfNode:
			guardOutputs(tr, n.List, text)
			guardOutputs(tr, n.ElseList, text)
		case *tparse.RangeNode:
			guardOutputs(tr, n.List, text)
			guardOutputs(tr, n.ElseList, text)
		case *tparse.WithNode:
			guardOutputs(tr, n.List, text)
			guardOutputs(tr, n.ElseList, text)
		case *tparse.ListNode:
			guardOutputs(tr, n, text)
		}
	}
}

// optionalFuncs take a missing value for what it is.
var optionalFuncs = map[string]bool{
	"default": true, "or": true, "and": true, "not": true,
	"eq": true, "ne": true, "lt": true, "le": true, "gt": true, "ge": true,
}

type guard struct {
	tr   *tparse.Tree
	line int
}

// check is the command | hpt_value LINE "EXPR".
func (g guard) check(pos tparse.Pos, expr string) *tparse.CommandNode {
	return &tparse.CommandNode{NodeType: tparse.NodeCommand, Pos: pos, Args: []tparse.Node{
		tparse.NewIdentifier(valueFunc).SetTree(g.tr).SetPos(pos),
		&tparse.NumberNode{NodeType: tparse.NodeNumber, Pos: pos, IsInt: true, Int64: int64(g.line), Text: strconv.Itoa(g.line)},
		&tparse.StringNode{NodeType: tparse.NodeString, Pos: pos, Quoted: strconv.Quote(expr), Text: expr},
	}}
}

// pipe guards a pipeline's stages, and with final its result.
func (g guard) pipe(p *tparse.PipeNode, final bool) {
	var cmds []*tparse.CommandNode
	var sofar []string
	for _, c := range p.Cmds {
		fn := ""
		if id, ok := c.Args[0].(*tparse.IdentifierNode); ok {
			fn = id.Ident
		}
		checked := fn != "" && !optionalFuncs[fn]
		if checked && len(sofar) > 0 {
			cmds = append(cmds, g.check(c.Position(), strings.Join(sofar, " | ")))
		}
		sofar = append(sofar, c.String())
		for i, a := range c.Args {
			if i > 0 || fn == "" {
				c.Args[i] = g.arg(a, checked)
			}
		}
		cmds = append(cmds, c)
	}
	if final {
		cmds = append(cmds, g.check(p.Position(), p.String()))
	}
	p.Cmds = cmds
}

// arg guards a command's argument: its own pipelines, and with checked its
// value.
func (g guard) arg(a tparse.Node, checked bool) tparse.Node {
	switch a := a.(type) {
	case *tparse.PipeNode:
		expr := a.String()
		g.pipe(a, false)
		if checked {
			a.Cmds = append(a.Cmds, g.check(a.Position(), strings.TrimSuffix(strings.TrimPrefix(expr, "("), ")")))
		}
		return a
	case *tparse.FieldNode, *tparse.ChainNode, *tparse.VariableNode:
		if !checked {
			return a
		}
		return &tparse.PipeNode{NodeType: tparse.NodePipe, Pos: a.Position(), Cmds: []*tparse.CommandNode{
			{NodeType: tparse.NodeCommand, Pos: a.Position(), Args: []tparse.Node{a}},
			g.check(a.Position(), a.String()),
		}}
	}
	return a
}

// Facts describe the target a config is applied to; templates see them as
// .Target.
type Facts struct {
	Name   string            `json:"name"`
	Labels map[string]string `json:"labels"`
}

// TemplateData is what templates see: {{ .Target.Name }}, {{ .Vars.x }}.
type TemplateData struct {
	Target Facts
	Vars   map[string]string
}

// TemplateData is what this config's templates see on a target with these
// facts, run with these vars: the config's [vars] with vars over them.
func (c *Config) TemplateData(facts Facts, vars map[string]string) TemplateData {
	merged := make(map[string]string, len(c.Vars)+len(vars))
	for k, v := range c.Vars {
		merged[k] = v
	}
	for k, v := range vars {
		merged[k] = v
	}
	if facts.Labels == nil {
		facts.Labels = map[string]string{}
	}
	return TemplateData{Target: facts, Vars: merged}
}

// render executes a config template into w.
func render(t *template.Template, w io.Writer, data TemplateData) error {
	if err := t.Execute(&limitWriter{w: w, left: maxRenderBytes}, data); err != nil {
		return renderErr(err)
	}
	return nil
}

// renderErr says what went wrong in a render without text/template's
// "template: NAME:LINE:COL: executing …" wrapping when the error is ours.
func renderErr(err error) error {
	var me *MissingValueError
	if errors.As(err, &me) {
		return me
	}
	return errors.New(templateErr(err))
}

var errRenderTooLarge = fmt.Errorf("renders more than %d MiB", maxRenderBytes>>20)

type limitWriter struct {
	w    io.Writer
	left int
}

func (l *limitWriter) Write(p []byte) (int, error) {
	if len(p) > l.left {
		return 0, errRenderTooLarge
	}
	l.left -= len(p)
	return l.w.Write(p)
}

// CheckTemplates renders every template of cfg (templated file content or
// source, exec scripts) as the engine would on a target with these facts and
// job vars, writing nothing anywhere, and returns every error, each naming
// its block. The node calls it at submission for each target of a job.
func CheckTemplates(cfg *Config, facts Facts, vars map[string]string) error {
	data := cfg.TemplateData(facts, vars)
	var errs ConfigErrors
	kinds := map[string]int{}
	for _, b := range cfg.Blocks {
		kinds[b.Kind()]++
		var t *template.Template
		field := ""
		switch b := b.(type) {
		case *FileBlock:
			t, field = b.tmpl, "content"
			if b.Content == nil {
				field = "source"
			}
		case *ExecBlock:
			t, field = b.tmpl, "script"
		}
		if t == nil {
			continue
		}
		if err := render(t, io.Discard, data); err != nil {
			errs = append(errs, &ConfigError{File: cfg.Name, Line: b.Line(),
				Field: fmt.Sprintf("%s[%d].%s", b.Kind(), kinds[b.Kind()], field), Msg: "template: " + err.Error()})
		}
	}
	if len(errs) == 0 {
		return nil
	}
	return errs
}
