package node

import (
	"errors"
	"fmt"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/hpt-dev/hpt/internal/secretvars"
	"github.com/hpt-dev/hpt/provconfig"
	"github.com/hpt-dev/hpt/rpc"
)

// maxTemplateProblems bounds how many distinct template errors a refused
// submission lists.
const maxTemplateProblems = 10

// checkTemplates renders the job's templates for every target it resolved
// to, with the job's vars and the target's labels as the state holds them,
// and refuses the job if any fails: a plain reference to a var or label
// that is not set is found here, by whoever submits, instead of failing on
// the targets. The same error on many targets is reported once, with them.
func (n *Node) checkTemplates(req *rpc.SubmitJobRequest, targets []string) error {
	cfg, err := provconfig.Parse(&provconfig.Bundle{Name: req.GetName(), Config: req.GetConfig(), Files: req.GetFiles()})
	if err != nil {
		return status.Errorf(codes.InvalidArgument, "config: %v", err)
	}
	// Secret vars are vars to the templates. An error that quoted one
	// (a function that echoes its argument) is redacted: errors never
	// carry a secret.
	vars := req.GetVars()
	redact := secretvars.NewRedactor(req.GetSecretVars())
	if len(req.GetSecretVars()) > 0 {
		vars = make(map[string]string, len(req.GetVars())+len(req.GetSecretVars()))
		for k, v := range req.GetVars() {
			vars[k] = v
		}
		for k, v := range req.GetSecretVars() {
			vars[k] = v
		}
	}
	var order []string
	on := map[string][]string{}
	for _, t := range targets {
		tk, err := n.fsm.TargetKey(t)
		if err != nil {
			return stateErr(err)
		}
		err = provconfig.CheckTemplates(cfg, provconfig.Facts{Name: t, Labels: tk.GetLabels()}, vars)
		var errs provconfig.ConfigErrors
		if err != nil && !errors.As(err, &errs) {
			return status.Errorf(codes.InvalidArgument, "config: target %s: %s", t, redact.String(err.Error()))
		}
		for _, e := range errs {
			msg := redact.String(e.Error())
			if _, seen := on[msg]; !seen {
				order = append(order, msg)
			}
			on[msg] = append(on[msg], t)
		}
	}
	if len(order) == 0 {
		return nil
	}
	lines := make([]string, 0, min(len(order), maxTemplateProblems)+1)
	for _, msg := range order[:min(len(order), maxTemplateProblems)] {
		lines = append(lines, targetList(on[msg])+": "+msg)
	}
	if more := len(order) - maxTemplateProblems; more > 0 {
		lines = append(lines, fmt.Sprintf("and %d more", more))
	}
	return status.Errorf(codes.InvalidArgument, "config: %s", strings.Join(lines, "\n"))
}

// targetList names up to three targets and counts the rest.
func targetList(ts []string) string {
	switch {
	case len(ts) == 1:
		return "target " + ts[0]
	case len(ts) <= 3:
		return "targets " + strings.Join(ts, ", ")
	}
	return fmt.Sprintf("targets %s and %d more", strings.Join(ts[:3], ", "), len(ts)-3)
}
