// Package deploy holds the deployment files the hpt binary can print
// (`hpt unit-file`), so that what is installed matches the binary.
package deploy

import (
	"embed"
	"fmt"
	"sort"
	"strings"
)

//go:embed systemd/*.service systemd/*.socket
var systemd embed.FS

// DefaultBinary is the path of hpt in the unit files.
const DefaultBinary = "/usr/local/bin/hpt"

// units maps the names `hpt unit-file` accepts to files.
var units = map[string]string{
	"server":       "hpt-server.service",
	"agent":        "hpt-agent.service",
	"agent-socket": "hpt-agent.socket",
}

// UnitNames lists the names Unit accepts.
func UnitNames() []string {
	out := make([]string, 0, len(units))
	for k := range units {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Unit returns the systemd unit for name (server, agent or agent-socket)
// and its file name, with hpt at binary instead of DefaultBinary.
func Unit(name, binary string) (file string, text []byte, err error) {
	file, ok := units[name]
	if !ok {
		return "", nil, fmt.Errorf("unit %q: want one of %s", name, strings.Join(UnitNames(), ", "))
	}
	b, err := systemd.ReadFile("systemd/" + file)
	if err != nil {
		return "", nil, err
	}
	if binary != "" && binary != DefaultBinary {
		b = []byte(strings.ReplaceAll(string(b), DefaultBinary, binary))
	}
	return file, b, nil
}
