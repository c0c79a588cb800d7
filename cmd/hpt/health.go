package main

import (
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/spf13/cobra"
)

// healthcheckCommand exists for container images without a shell or curl:
// a HEALTHCHECK can run hpt itself against a node's /healthz.
func (a *app) healthcheckCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "healthcheck [URL]",
		Short: "Exit 0 if a node's /healthz answers 200 (for container health checks)",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			url := "http://127.0.0.1:7480/healthz"
			if len(args) == 1 {
				url = args[0]
			}
			hc := &http.Client{Timeout: 3 * time.Second}
			resp, err := hc.Get(url)
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("%s: %s: %s", url, resp.Status, body)
			}
			_, err = a.stdout.Write(body)
			return err
		},
	}
}
