package provision

import "github.com/hpt-dev/hpt/provconfig"

// The config model and its parser live in provconfig, which the server
// links without this engine. These names stay here for the agent, which
// parses what it runs; new code imports provconfig.
type (
	Bundle = provconfig.Bundle
	Facts  = provconfig.Facts
)

// MaxBundleSize is provconfig.MaxBundleSize.
const MaxBundleSize = provconfig.MaxBundleSize

// Parse is provconfig.Parse.
func Parse(b *Bundle) (*provconfig.Config, error) { return provconfig.Parse(b) }
