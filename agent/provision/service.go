package provision

import (
	"fmt"
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
	// A dry run asks, once, whether systemd has the unit before it reports
	// a start, restart or enable, which the real run would fail on.
	checked := false
	check := func(verb string) error {
		if !r.dry || checked || verb == "" || verb == "stop" || verb == "disable" {
			return nil
		}
		checked = true
		return r.precondition(&o, r.unitLoads(b.Unit))
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
		if err := check(verb); err != nil {
			return o.fail("%v", err)
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
	if err := check(verb); err != nil {
		return o.fail("%v", err)
	}
	if verb != "" && !r.dry {
		if _, err := r.must(systemctl(verb)); err != nil {
			return o.fail("%v", err)
		}
	}
	return o
}

// unitLoads asks systemd whether it has the unit: starting, restarting or
// enabling one that is not found or is masked fails.
func (r *run) unitLoads(unit string) error {
	res, err := r.must(Command{Name: "systemctl", Args: []string{"show", "--property=LoadState", "--value", unit}, Timeout: ServiceTimeout})
	if err != nil {
		return err
	}
	switch state := strings.TrimSpace(firstRawLine(res.Stdout)); state {
	case "not-found":
		return fmt.Errorf("systemd has no unit %s (LoadState=not-found)", unit)
	case "masked":
		return fmt.Errorf("unit %s is masked (LoadState=masked)", unit)
	}
	return nil
}
