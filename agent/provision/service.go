package provision

import (
	"strings"
	"time"
)

// ServiceTimeout bounds one systemctl command.
const ServiceTimeout = 5 * time.Minute

// A service block asks systemctl is-active / is-enabled first and starts,
// stops, enables or disables only when the unit differs. "restarted" always
// restarts, so it is always "changed".
func (b serviceBlock) apply(r *run) blockOutcome {
	var o blockOutcome
	systemctl := func(args ...string) Command {
		return Command{Name: "systemctl", Args: append(args, b.Unit), Timeout: ServiceTimeout}
	}
	if b.Enabled != nil {
		res, err := r.exec(systemctl("is-enabled"))
		if err != nil {
			return o.fail("systemctl: %v", err)
		}
		state := strings.TrimSpace(firstRawLine(res.Stdout))
		if state == "" {
			state = "unknown"
		}
		enabled := state == "enabled" || state == "enabled-runtime"
		var verb string
		switch {
		case *b.Enabled && !enabled && state != "static" && state != "alias" && state != "indirect" && state != "generated":
			verb = "enable"
			o.change("enabled", state, "enabled")
		case !*b.Enabled && enabled:
			verb = "disable"
			o.change("enabled", state, "disabled")
		}
		if verb != "" && !r.dry {
			if _, err := r.must(systemctl(verb)); err != nil {
				return o.fail("%v", err)
			}
		}
	}
	if b.Status == "" {
		return o
	}
	res, err := r.exec(systemctl("is-active"))
	if err != nil {
		return o.fail("systemctl: %v", err)
	}
	state := strings.TrimSpace(firstRawLine(res.Stdout))
	if state == "" {
		state = "unknown"
	}
	running := state == "active" || state == "activating" || state == "reloading"
	var verb string
	switch {
	case b.Status == "restarted":
		verb = "restart"
		o.change("status", state, "restarted")
	case b.Status == "started" && !running:
		verb = "start"
		o.change("status", state, "active")
	case b.Status == "stopped" && running:
		verb = "stop"
		o.change("status", state, "inactive")
	}
	if verb != "" && !r.dry {
		if _, err := r.must(systemctl(verb)); err != nil {
			return o.fail("%v", err)
		}
	}
	return o
}
