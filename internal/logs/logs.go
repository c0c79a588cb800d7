// Package logs adapts the loggers of hpt's dependencies to log/slog, so one
// handler decides format and level for everything a process logs:
// hashicorp/raft's hclog and memberlist's standard *log.Logger lines.
package logs

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log"
	"log/slog"
	"strings"

	"github.com/hashicorp/go-hclog"
)

// hclogAdapter routes hclog output into slog.
type hclogAdapter struct {
	log  *slog.Logger
	name string
	args []any
}

// Hclog returns an hclog.Logger that logs to l with component=name.
func Hclog(l *slog.Logger, name string) hclog.Logger {
	return &hclogAdapter{log: l.With("component", name), name: name}
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
	h.log.Log(context.Background(), slogLevel(level), msg, formatValues(args)...)
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
	return &hclogAdapter{log: h.log.With(args...), name: h.name, args: append(append([]any(nil), h.args...), args...)}
}

func (h *hclogAdapter) Named(name string) hclog.Logger {
	return &hclogAdapter{log: h.log.With("sub", name), name: h.name + "." + name, args: h.args}
}

func (h *hclogAdapter) ResetNamed(name string) hclog.Logger {
	return &hclogAdapter{log: h.log, name: name, args: h.args}
}

func (h *hclogAdapter) StandardLogger(*hclog.StandardLoggerOptions) *log.Logger {
	return log.New(h.StandardWriter(nil), "", 0)
}

func (h *hclogAdapter) StandardWriter(*hclog.StandardLoggerOptions) io.Writer {
	return &stdLogWriter{log: h.log}
}

// stdLogWriter turns lines written by a *log.Logger (memberlist's logger)
// into slog records, mapping memberlist's "[LEVEL]" prefixes to levels.
type stdLogWriter struct{ log *slog.Logger }

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
		w.log.Log(context.Background(), level, msg)
	}
	return len(p), nil
}

// Std returns a *log.Logger whose lines become slog records with
// component=name, at the level of memberlist-style "[LEVEL]" prefixes.
func Std(l *slog.Logger, component string) *log.Logger {
	return log.New(&stdLogWriter{log: l.With("component", component)}, "", 0)
}
