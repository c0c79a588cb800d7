package export

import (
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
)

// Defaults for the zero fields of Config.
const (
	DefaultStream          = "HPT_EVENTS"
	DefaultSubjectPrefix   = "hpt.events"
	DefaultDuplicateWindow = 2 * time.Minute

	FormatJSON     = "json"
	FormatProtobuf = "protobuf"
)

// ErrConfig is wrapped by every error Validate returns.
var ErrConfig = errors.New("invalid export config")

// Config configures an Exporter. Zero fields other than URL take the
// defaults that DefaultConfig fills in.
type Config struct {
	// URL names the NATS servers: "nats://host:4222", or several separated
	// by commas. Required.
	URL string
	// Options are passed to nats.Connect after the exporter's own (a
	// connection name, unlimited reconnects, a dialer that honours Run's
	// context), so they may override them: credentials (nats.UserCredentials,
	// nats.Nkey, nats.UserInfo, nats.Token), TLS (nats.Secure,
	// nats.RootCAs, nats.ClientCert), reconnect tuning.
	Options []nats.Option
	// Stream is the JetStream stream. Default "HPT_EVENTS". If it does not
	// exist it is created with subjects "<SubjectPrefix>.>", file storage
	// and DuplicateWindow; an existing stream is used as it is (it must
	// capture "<SubjectPrefix>.>").
	Stream string
	// SubjectPrefix: each event is published to "<SubjectPrefix>.<type>",
	// the type as events.Name spells it ("hpt.events.user_added").
	// Default "hpt.events".
	SubjectPrefix string
	// Format of the message body: "json" (default; the events.JSON object,
	// as `hpt events -o json` prints it) or "protobuf" (the events.Event
	// envelope, events.Encode).
	Format string
	// DuplicateWindow of a stream the exporter creates. Default 2m.
	DuplicateWindow time.Duration
	// Logger; default discards.
	Logger *slog.Logger
}

// DefaultConfig returns a Config with every default filled in; the caller
// sets URL and Options.
func DefaultConfig() Config {
	return Config{
		Stream:          DefaultStream,
		SubjectPrefix:   DefaultSubjectPrefix,
		Format:          FormatJSON,
		DuplicateWindow: DefaultDuplicateWindow,
	}
}

// withDefaults returns c with its zero fields set to the defaults.
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.Stream == "" {
		c.Stream = d.Stream
	}
	if c.SubjectPrefix == "" {
		c.SubjectPrefix = d.SubjectPrefix
	}
	if c.Format == "" {
		c.Format = d.Format
	}
	if c.DuplicateWindow == 0 {
		c.DuplicateWindow = d.DuplicateWindow
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Validate rejects a config that cannot work, naming the field. Zero fields
// that have defaults are accepted.
func (c *Config) Validate() error {
	var errs []error
	add := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: %s: %s", ErrConfig, field, fmt.Sprintf(format, args...)))
	}
	if strings.TrimSpace(c.URL) == "" {
		add("nats url", "required")
	} else {
		for _, s := range strings.Split(c.URL, ",") {
			if err := checkServerURL(strings.TrimSpace(s)); err != nil {
				add("nats url", "%q: %v", s, err)
			}
		}
	}
	if c.Stream != "" {
		if err := checkStreamName(c.Stream); err != nil {
			add("stream", "%q: %v", c.Stream, err)
		}
	}
	if c.SubjectPrefix != "" {
		if err := checkSubjectPrefix(c.SubjectPrefix); err != nil {
			add("subject prefix", "%q: %v", c.SubjectPrefix, err)
		}
	}
	switch c.Format {
	case "", FormatJSON, FormatProtobuf:
	default:
		add("format", "%q: want %q or %q", c.Format, FormatJSON, FormatProtobuf)
	}
	if c.DuplicateWindow < 0 {
		add("duplicate window", "%v: must not be negative", c.DuplicateWindow)
	} else if c.DuplicateWindow > 0 && c.DuplicateWindow < time.Second {
		add("duplicate window", "%v: want at least 1s", c.DuplicateWindow)
	}
	return errors.Join(errs...)
}

func checkServerURL(s string) error {
	if s == "" {
		return errors.New("empty server address")
	}
	if !strings.Contains(s, "://") {
		// nats.go accepts "host:port" and adds nats://.
		s = "nats://" + s
	}
	u, err := url.Parse(s)
	if err != nil {
		return err
	}
	switch u.Scheme {
	case "nats", "tls", "ws", "wss":
	default:
		return fmt.Errorf("scheme %q: want nats, tls, ws or wss", u.Scheme)
	}
	if u.Hostname() == "" {
		return errors.New("no host")
	}
	return nil
}

// checkStreamName applies JetStream's rules for stream names.
func checkStreamName(s string) error {
	if len(s) > 255 {
		return errors.New("longer than 255 bytes")
	}
	for _, r := range s {
		if r <= ' ' || r == 0x7f || strings.ContainsRune(".*>/\\", r) {
			return fmt.Errorf("must not contain %q", r)
		}
	}
	return nil
}

// checkSubjectPrefix accepts a literal subject: dot-separated non-empty
// tokens, no wildcards, no white space.
func checkSubjectPrefix(s string) error {
	for _, tok := range strings.Split(s, ".") {
		if tok == "" {
			return errors.New("empty token (leading, trailing or double dot)")
		}
		for _, r := range tok {
			if r <= ' ' || r == 0x7f || r == '*' || r == '>' {
				return fmt.Errorf("must not contain %q", r)
			}
		}
	}
	return nil
}
