// Package provconfig is the provisioning config: the Bundle that travels to
// a target, the model of a validated Config and its blocks, and the parser
// that turns one into the other.
//
// A config is TOML (SPEC.md section 9): blocks such as [[file]], [[exec]],
// [[package]], [[user]], [[group]], [[service]] and [[clone]] that describe
// the state a host should be in.
//
//   - LoadBundle reads a config and the source files it names into a Bundle;
//     Load also parses it, reporting the problems of both together.
//   - Parse validates the whole Bundle before anything runs and returns a
//     Config, or every problem found, each a *ConfigError naming the line.
//   - CheckTemplates renders a Config's templates for one target, as the
//     engine would, writing nothing: the node calls it at job submission.
//
// The package is what the server links to validate jobs, so it runs no
// programs (it must not depend on os/exec; .ci/imports checks) and knows
// nothing of the engine that applies a Config, agent/provision. A Config is
// immutable once Parse returns it.
package provconfig
