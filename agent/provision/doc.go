// Package provision applies hpt provisioning configs to the host it runs on.
//
// A config is TOML (SPEC.md section 9). Reading and validating it is
// provconfig's job (LoadBundle, Parse), so that the server can check a job
// without linking this engine; Apply brings the host to the state a
// provconfig.Config describes, block by block in file order, and returns a
// Report with one BlockResult per block.
//
// Every block is idempotent: it inspects the host first and changes only what
// differs, so a second Apply reports every block "ok". With Options.DryRun the
// same inspection runs and the Report lists what would change, but nothing is
// changed (exec blocks' unless/onlyif probes do run: they are expected to be
// free of side effects, as in Salt and Ansible).
//
// External programs (useradd, apt-get, systemctl, git, …) are started through
// the Runner interface; ExecRunner is the real one and RecordingRunner records
// commands and answers them from a handler, for tests.
package provision
