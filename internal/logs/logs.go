// Package logs adapts the loggers of hpt's dependencies to log/slog, so one
// handler decides format and level for everything a process logs:
// hashicorp/raft's hclog and memberlist's standard *log.Logger lines.
//
// The adapters also decide which of those lines an operator should see. A
// healthy cluster's start and an orderly stop make raft and memberlist
// warn and err about things that are expected then (an empty log being
// filled, a first election, transports closing under them, peers that
// leave on purpose); those are logged at debug, so that a WARN or ERROR
// line on a healthy start or a Ctrl-C always means something.
package logs

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log"
	"log/slog"
	"strings"
	"sync/atomic"

	"github.com/hashicorp/go-hclog"
)

// Quiet is raised by the owner of raft and memberlist once it stops them
// on purpose, or knows that its peers are stopping (`hpt dev` stopping its
// whole cluster). From then on the adapters given it log the dependency's
// warnings and errors at debug: closed transports, failed sends and peers
// that cannot be reached are what an orderly stop looks like. The zero
// Quiet is lowered; a nil *Quiet is never raised.
type Quiet struct{ on atomic.Bool }

// Raise quiets the adapters for good.
func (q *Quiet) Raise() { q.on.Store(true) }

// Raised reports whether Raise was called.
func (q *Quiet) Raised() bool { return q != nil && q.on.Load() }

// hclogAdapter routes hclog output into slog.
type hclogAdapter struct {
	log   *slog.Logger
	name  string
	args  []any
	quiet *Quiet
}

// Hclog returns an hclog.Logger that logs to l with component=name. Once
// quiet (which may be nil) is raised, its warnings and errors go to debug.
func Hclog(l *slog.Logger, name string, quiet *Quiet) hclog.Logger {
	return &hclogAdapter{log: l.With("component", name), name: name, quiet: quiet}
}

func slogLevel(l hclog.Level) slog.Level {
	switch l {
	case hclog.Trace, hclog.Debug:
		return slog.LevelDebug
	case hclog.Warn:
		return slog.LevelWarn
	case hclog.Error:
		return slog.LevelError
	}
	return slog.LevelInfo
}

func (h *hclogAdapter) Log(level hclog.Level, msg string, args ...any) {
	l := slogLevel(level)
	if l > slog.LevelDebug && (h.quiet.Raised() || l == slog.LevelWarn && routine(msg, args)) {
		l = slog.LevelDebug
	}
	h.log.Log(context.Background(), l, msg, formatValues(args)...)
}

// routine reports whether a warning raft logs is part of a healthy
// cluster's normal work, seen on every start, rather than a sign of
// trouble. The list is short and exact on purpose; anything else raft
// warns about stays a warning.
func routine(msg string, args []any) bool {
	switch msg {
	case "no known peers, aborting election":
		// A node with no configuration yet: it waits for bootstrap
		// (--bootstrap-expect) or for a leader to add it, and the node
		// logs that wait itself.
		return true
	case "heartbeat timeout reached, starting election":
		// The first election of a new cluster, when there has never been a
		// leader. Losing a known leader stays a warning.
		return arg(args, "last-leader-id") == ""
	case "failed to get previous log":
		// A follower with an empty log asked for entries it does not have
		// yet: the leader then sends it the log from the start.
		return arg(args, "last-index") == "0"
	case "appendEntries rejected, sending older logs":
		// The leader's side of the same: it goes back to the first entry.
		next := arg(args, "next")
		return next == "0" || next == "1"
	}
	return false
}

// arg returns the value of key among hclog's alternating key-value args,
// printed, or "<missing>".
func arg(args []any, key string) string {
	for i := 0; i+1 < len(args); i += 2 {
		if k, ok := args[i].(string); ok && k == key {
			return fmt.Sprint(args[i+1])
		}
	}
	return "<missing>"
}

// formatValues renders hclog.Fmt values (raft logs its configuration with
// one), which slog would otherwise print as the raw format and arguments.
func formatValues(args []any) []any {
	var out []any
	for i, a := range args {
		f, ok := a.(hclog.Format)
		if !ok || len(f) == 0 {
			continue
		}
		format, ok := f[0].(string)
		if !ok {
			continue
		}
		if out == nil {
			out = append([]any(nil), args...)
		}
		out[i] = fmt.Sprintf(format, f[1:]...)
	}
	if out == nil {
		return args
	}
	return out
}
func (h *hclogAdapter) Trace(msg string, args ...any) { h.Log(hclog.Trace, msg, args...) }
func (h *hclogAdapter) Debug(msg string, args ...any) { h.Log(hclog.Debug, msg, args...) }
func (h *hclogAdapter) Info(msg string, args ...any)  { h.Log(hclog.Info, msg, args...) }
func (h *hclogAdapter) Warn(msg string, args ...any)  { h.Log(hclog.Warn, msg, args...) }
func (h *hclogAdapter) Error(msg string, args ...any) { h.Log(hclog.Error, msg, args...) }
func (h *hclogAdapter) enabled(l slog.Level) bool {
	return h.log.Enabled(context.Background(), l)
}
func (h *hclogAdapter) IsTrace() bool        { return h.enabled(slog.LevelDebug - 4) }
func (h *hclogAdapter) IsDebug() bool        { return h.enabled(slog.LevelDebug) }
func (h *hclogAdapter) IsInfo() bool         { return h.enabled(slog.LevelInfo) }
func (h *hclogAdapter) IsWarn() bool         { return h.enabled(slog.LevelWarn) }
func (h *hclogAdapter) IsError() bool        { return h.enabled(slog.LevelError) }
func (h *hclogAdapter) ImpliedArgs() []any   { return h.args }
func (h *hclogAdapter) Name() string         { return h.name }
func (h *hclogAdapter) SetLevel(hclog.Level) {}
func (h *hclogAdapter) GetLevel() hclog.Level {
	switch {
	case h.IsDebug():
		return hclog.Debug
	case h.IsInfo():
		return hclog.Info
	case h.IsWarn():
		return hclog.Warn
	}
	return hclog.Error
}

func (h *hclogAdapter) With(args ...any) hclog.Logger {
	return &hclogAdapter{log: h.log.With(args...), name: h.name, args: append(append([]any(nil), h.args...), args...), quiet: h.quiet}
}

func (h *hclogAdapter) Named(name string) hclog.Logger {
	return &hclogAdapter{log: h.log.With("sub", name), name: h.name + "." + name, args: h.args, quiet: h.quiet}
}

func (h *hclogAdapter) ResetNamed(name string) hclog.Logger {
	return &hclogAdapter{log: h.log, name: name, args: h.args, quiet: h.quiet}
}

func (h *hclogAdapter) StandardLogger(*hclog.StandardLoggerOptions) *log.Logger {
	return log.New(h.StandardWriter(nil), "", 0)
}

func (h *hclogAdapter) StandardWriter(*hclog.StandardLoggerOptions) io.Writer {
	return &stdLogWriter{log: h.log, quiet: h.quiet}
}

// stdLogWriter turns lines written by a *log.Logger (memberlist's logger)
// into slog records, mapping memberlist's "[LEVEL]" prefixes to levels.
type stdLogWriter struct {
	log   *slog.Logger
	quiet *Quiet
}

func (w *stdLogWriter) Write(p []byte) (int, error) {
	for _, line := range bytes.Split(bytes.TrimRight(p, "\n"), []byte("\n")) {
		msg := string(line)
		level := slog.LevelInfo
		for prefix, l := range map[string]slog.Level{"[DEBUG]": slog.LevelDebug, "[INFO]": slog.LevelInfo, "[WARN]": slog.LevelWarn, "[ERR]": slog.LevelError, "[ERROR]": slog.LevelError} {
			if i := strings.Index(msg, prefix); i >= 0 {
				level = l
				msg = strings.TrimSpace(msg[i+len(prefix):])
				break
			}
		}
		if level > slog.LevelDebug && w.quiet.Raised() {
			level = slog.LevelDebug
		}
		w.log.Log(context.Background(), level, msg)
	}
	return len(p), nil
}

// Std returns a *log.Logger whose lines become slog records with
// component=name, at the level of memberlist-style "[LEVEL]" prefixes; once
// quiet (which may be nil) is raised, at debug.
func Std(l *slog.Logger, component string, quiet *Quiet) *log.Logger {
	return log.New(&stdLogWriter{log: l.With("component", component), quiet: quiet}, "", 0)
}
