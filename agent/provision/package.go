package provision

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"
)

// PackageTimeout bounds one package manager command.
const PackageTimeout = 30 * time.Minute

// osReleasePath is read to pick the package manager.
const osReleasePath = "/etc/os-release"

var aptEnv = []string{"DEBIAN_FRONTEND=noninteractive", "APT_LISTCHANGES_FRONTEND=none"}

// A package block queries what is installed first and runs the package
// manager only for the packages that differ, so a second run does nothing.
func (b packageBlock) apply(r *run) blockOutcome {
	var o blockOutcome
	pm, err := r.packageManager()
	if err != nil {
		return o.fail("%v", err)
	}
	have, err := r.installedPackages(pm, b.Names)
	if err != nil {
		return o.fail("%v", err)
	}
	var todo []string
	for _, n := range b.Names {
		v, installed := have[pkgBase(n)]
		switch {
		case b.State == "absent" && installed:
			todo = append(todo, n)
			o.change(n, "installed "+v, "absent")
		case b.State != "absent" && !installed:
			todo = append(todo, n)
			o.change(n, "absent", "installed")
		}
	}
	if len(todo) == 0 || r.dry {
		return o
	}
	res, err := r.must(pkgCommand(pm, b.State, todo))
	out := res.Output()
	if err != nil && pm == "apt" && b.State != "absent" {
		// Stale or missing package lists (a fresh image) are the usual cause:
		// refresh them once and retry.
		upd, uerr := r.must(Command{Name: "apt-get", Args: []string{"update", "-q"}, Env: aptEnv, Timeout: PackageTimeout})
		out += upd.Output()
		if uerr == nil {
			res, err = r.must(pkgCommand(pm, b.State, todo))
			out += res.Output()
		}
	}
	o.output = out
	if err != nil {
		return o.fail("%v", err)
	}
	// Verify, and report the versions installed.
	have, err = r.installedPackages(pm, todo)
	if err != nil {
		return o.fail("%v", err)
	}
	for i := range o.changes {
		c := &o.changes[i]
		v, installed := have[pkgBase(c.Field)]
		switch {
		case b.State == "absent" && installed:
			return o.fail("%s is still installed after removal", c.Field)
		case b.State != "absent" && !installed:
			return o.fail("%s is not installed after installation", c.Field)
		case installed:
			c.New = "installed " + v
		}
	}
	return o
}

// pkgBase strips an architecture qualifier: libc6:amd64 → libc6.
func pkgBase(name string) string {
	if i := strings.IndexByte(name, ':'); i > 0 {
		return name[:i]
	}
	return name
}

func pkgCommand(pm, state string, names []string) Command {
	verb := "install"
	if state == "absent" {
		verb = "remove"
	}
	switch pm {
	case "apt":
		args := []string{verb, "-y", "-q"}
		if verb == "install" {
			args = append(args, "-o", "Dpkg::Options::=--force-confdef", "-o", "Dpkg::Options::=--force-confold")
		}
		return Command{Name: "apt-get", Args: append(args, names...), Env: aptEnv, Timeout: PackageTimeout}
	default: // dnf, yum
		return Command{Name: pm, Args: append([]string{verb, "-y"}, names...), Timeout: PackageTimeout}
	}
}

// installedPackages returns the installed version of each of names that is
// installed.
func (r *run) installedPackages(pm string, names []string) (map[string]string, error) {
	out := map[string]string{}
	switch pm {
	case "apt":
		args := append([]string{"-W", "-f=${Package}\\t${Status}\\t${Version}\\n"}, names...)
		res, err := r.exec(Command{Name: "dpkg-query", Args: args})
		if err != nil {
			return nil, fmt.Errorf("dpkg-query: %w", err)
		}
		// Exit 1 with "no packages found matching" is how dpkg-query says a
		// package is unknown; anything it printed is still valid.
		if res.ExitCode > 1 {
			return nil, &CommandError{Command: "dpkg-query", ExitCode: res.ExitCode, Output: res.Output()}
		}
		sc := bufio.NewScanner(bytes.NewReader(res.Stdout))
		for sc.Scan() {
			f := strings.Split(sc.Text(), "\t")
			if len(f) != 3 {
				continue
			}
			status := strings.Fields(f[1])
			if len(status) == 3 && (status[2] == "installed" || strings.HasPrefix(status[2], "triggers-")) {
				out[f[0]] = f[2]
			}
		}
	default:
		args := append([]string{"-q", "--qf", "%{NAME}\\t%{VERSION}-%{RELEASE}\\n"}, names...)
		res, err := r.exec(Command{Name: "rpm", Args: args})
		if err != nil {
			return nil, fmt.Errorf("rpm: %w", err)
		}
		// rpm -q exits with the number of packages not installed and says
		// "package x is not installed" for each.
		sc := bufio.NewScanner(bytes.NewReader(res.Stdout))
		for sc.Scan() {
			if f := strings.Split(sc.Text(), "\t"); len(f) == 2 {
				out[f[0]] = f[1]
			}
		}
	}
	return out, nil
}

// packageManager returns the configured or detected package manager.
func (r *run) packageManager() (string, error) {
	if r.opts.PackageManager != "" {
		switch r.opts.PackageManager {
		case "apt", "dnf", "yum":
			return r.opts.PackageManager, nil
		}
		return "", fmt.Errorf("unsupported package manager %q (apt, dnf or yum)", r.opts.PackageManager)
	}
	if r.pm == "" && r.pmErr == nil {
		osRelease, _ := os.ReadFile(osReleasePath)
		r.pm, r.pmErr = detectPackageManager(osRelease, exec.LookPath)
	}
	return r.pm, r.pmErr
}

// ErrNoPackageManager is returned when neither apt nor dnf/yum is found.
var ErrNoPackageManager = errors.New("no supported package manager found (apt on Debian-family, dnf or yum on RHEL-family)")

// detectPackageManager picks apt, dnf or yum from the os-release ID and
// ID_LIKE fields, checking that its programs are present; lacking a known
// ID it takes whichever manager is installed.
func detectPackageManager(osRelease []byte, lookPath func(string) (string, error)) (string, error) {
	has := func(names ...string) bool {
		for _, n := range names {
			if _, err := lookPath(n); err != nil {
				return false
			}
		}
		return true
	}
	var ids []string
	sc := bufio.NewScanner(bytes.NewReader(osRelease))
	for sc.Scan() {
		k, v, ok := strings.Cut(strings.TrimSpace(sc.Text()), "=")
		if ok && (k == "ID" || k == "ID_LIKE") {
			ids = append(ids, strings.Fields(strings.Trim(v, `"'`))...)
		}
	}
	for _, id := range ids {
		switch id {
		case "debian", "ubuntu":
			if has("apt-get", "dpkg-query") {
				return "apt", nil
			}
		case "rhel", "fedora", "centos", "rocky", "almalinux", "amzn", "ol":
			if has("dnf", "rpm") {
				return "dnf", nil
			}
			if has("yum", "rpm") {
				return "yum", nil
			}
		}
	}
	switch {
	case has("apt-get", "dpkg-query"):
		return "apt", nil
	case has("dnf", "rpm"):
		return "dnf", nil
	case has("yum", "rpm"):
		return "yum", nil
	}
	return "", ErrNoPackageManager
}
