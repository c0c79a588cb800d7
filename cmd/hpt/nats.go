package main

import (
	"fmt"
	"os"

	"github.com/nats-io/nats.go"
	"github.com/spf13/pflag"

	"github.com/hpt-dev/hpt/node/export"
)

// natsFlags are the server's event export options. Secrets (a password, a
// token) come only from the environment, so they never show in ps.
type natsFlags struct {
	url, creds, nkey, user string
	ca, cert, key          string
	stream, prefix, format string
}

func (f *natsFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&f.url, "nats-url", "", "export committed events to NATS JetStream at these servers (nats://host:4222,...; default off; env HPT_NATS_URL)")
	fs.StringVar(&f.creds, "nats-creds", "", "NATS credentials file (JWT and nkey seed)")
	fs.StringVar(&f.nkey, "nats-nkey", "", "NATS nkey seed file")
	fs.StringVar(&f.user, "nats-user", "", "NATS user name (password from HPT_NATS_PASSWORD); a token comes from HPT_NATS_TOKEN")
	fs.StringVar(&f.ca, "nats-ca", "", "CA certificate file to verify the NATS servers (enables TLS)")
	fs.StringVar(&f.cert, "nats-cert", "", "client certificate file for NATS TLS (with --nats-key)")
	fs.StringVar(&f.key, "nats-key", "", "client key file for NATS TLS (with --nats-cert)")
	fs.StringVar(&f.stream, "nats-stream", export.DefaultStream, "JetStream stream (created if missing)")
	fs.StringVar(&f.prefix, "nats-subject-prefix", export.DefaultSubjectPrefix, "events go to PREFIX.<type>")
	fs.StringVar(&f.format, "nats-format", export.FormatJSON, "message body: json or protobuf")
}

// config returns the export configuration, or nil when export is off.
func (f *natsFlags) config(a *app) (*export.Config, error) {
	url := a.setting(f.url, "HPT_NATS_URL", "")
	if url == "" {
		for flag, v := range map[string]string{"--nats-creds": f.creds, "--nats-nkey": f.nkey, "--nats-user": f.user, "--nats-ca": f.ca, "--nats-cert": f.cert} {
			if v != "" {
				return nil, usagef("%s: needs --nats-url", flag)
			}
		}
		return nil, nil
	}
	cfg := export.DefaultConfig()
	cfg.URL, cfg.Stream, cfg.SubjectPrefix, cfg.Format = url, f.stream, f.prefix, f.format
	for flag, file := range map[string]string{"--nats-creds": f.creds, "--nats-nkey": f.nkey, "--nats-ca": f.ca, "--nats-cert": f.cert, "--nats-key": f.key} {
		if file == "" {
			continue
		}
		if _, err := os.Stat(file); err != nil {
			return nil, usagef("%s: %v", flag, err)
		}
	}
	if (f.cert == "") != (f.key == "") {
		return nil, usagef("--nats-cert and --nats-key go together")
	}
	if f.creds != "" {
		cfg.Options = append(cfg.Options, nats.UserCredentials(f.creds))
	}
	if f.nkey != "" {
		opt, err := nats.NkeyOptionFromSeed(f.nkey)
		if err != nil {
			return nil, usagef("--nats-nkey: %v", err)
		}
		cfg.Options = append(cfg.Options, opt)
	}
	if f.user != "" {
		cfg.Options = append(cfg.Options, nats.UserInfo(f.user, a.getenv("HPT_NATS_PASSWORD")))
	}
	if tok := a.getenv("HPT_NATS_TOKEN"); tok != "" {
		cfg.Options = append(cfg.Options, nats.Token(tok))
	}
	if f.ca != "" {
		cfg.Options = append(cfg.Options, nats.RootCAs(f.ca))
	}
	if f.cert != "" {
		cfg.Options = append(cfg.Options, nats.ClientCert(f.cert, f.key))
	}
	if err := cfg.Validate(); err != nil {
		return nil, usageError{fmt.Errorf("--nats-*: %w", err)}
	}
	return &cfg, nil
}
