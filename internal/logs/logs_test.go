package logs

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
)

// raft logs its configuration as hclog.Fmt("%+v", servers); the line must
// show the servers, not the format and a list.
func TestHclogFmtIsRendered(t *testing.T) {
	var buf bytes.Buffer
	l := Hclog(slog.New(slog.NewTextHandler(&buf, nil)), "raft")
	l.Info("initial configuration", "index", 1, "servers", hclog.Fmt("%+v", []struct{ ID string }{{"n1"}}))
	got := buf.String()
	if !strings.Contains(got, "servers=[{ID:n1}]") || strings.Contains(got, "%+v") {
		t.Fatalf("log line %q, want servers=[{ID:n1}]", got)
	}
}
