// Command fraiseql-observers turns committed PostgreSQL changes into actions: it reads
// a pgoutput logical replication slot, matches each change against observers and
// delivers it to action sinks. See README.md and docs/cli.md.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/fraiseql/fraiseql-observers/cdc"
	"github.com/fraiseql/fraiseql-observers/checkpoint"
	"github.com/fraiseql/fraiseql-observers/configs"
	"github.com/fraiseql/fraiseql-observers/service"
)

// version is set at build time (-ldflags "-X main.version=..."); see buildVersion.
var version = ""

// Exit codes (documented in docs/cli.md; exitUnavailable is in cli.go).
const (
	exitOK       = 0
	exitFailure  = 1 // runtime failure
	exitConfig   = 2 // invalid configuration or command line
	exitPrefight = 3 // a preflight check failed: the server is not ready for streaming
	exitGap      = 4 // a data gap was detected: operator decision needed
	exitFenced   = 5 // a newer instance took over the slot
)

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

// run executes the command line and returns the process exit code.
func run(args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// No control character from a value reaches the terminal (termsafe.go).
	out, errOut := newTermWriter(stdout), newTermWriter(stderr)
	defer out.Flush()
	defer errOut.Flush()
	stdout, stderr = out, errOut
	root := newRootCmd(stdout, stderr)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	code := exitCode(err)
	var silent *silentError
	if !errors.As(err, &silent) {
		fmt.Fprintln(stderr, "error:", err)
	}
	return code
}

// exitCode maps an error to the documented exit code.
func exitCode(err error) int {
	var ce *codeError
	var cfgErrs *configs.Errors
	var cfgErr *configs.Error
	var pre *cdc.PreflightError
	var gap *cdc.GapError
	var tooOld *cdc.ReplayTooOldError
	var svcCfg *service.ConfigError
	switch {
	case errors.As(err, &tooOld):
		return exitConfig
	case errors.As(err, &ce):
		return ce.code
	case errors.As(err, &svcCfg):
		return exitConfig
	case errors.As(err, &gap):
		return exitGap
	case errors.As(err, &pre):
		return exitPrefight
	case errors.Is(err, checkpoint.ErrFenced):
		return exitFenced
	case errors.As(err, &cfgErrs), errors.As(err, &cfgErr):
		return exitConfig
	}
	return exitFailure
}

// codeError carries an explicit exit code.
type codeError struct {
	code int
	err  error
}

func (e *codeError) Error() string { return e.err.Error() }
func (e *codeError) Unwrap() error { return e.err }

// silentError is an error already reported to the user.
type silentError struct{ error }

func (e *silentError) Unwrap() error { return e.error }

func newRootCmd(stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:           "fraiseql-observers",
		Short:         "Turn committed PostgreSQL changes into actions",
		Version:       buildVersion(),
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetVersionTemplate("{{.Name}} {{.Version}}\n")
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return &codeError{code: exitConfig, err: fmt.Errorf("%w\nrun '%s --help' for usage", err, c.CommandPath())}
	})
	g := &globals{stdout: stdout, stderr: stderr}
	g.register(root)
	root.AddCommand(newStartCmd(g), newStatusCmd(g), newMetricsCmd(g), newValidateCmd(g), newDLQCmd(g),
		newDebugEventCmd(g), newCacheStatsCmd(g), newReplayCmd(g), newSnapshotCmd(g))
	return root
}

// buildVersion returns the version stamped at build time, else the module version
// recorded by the Go toolchain, else "devel".
func buildVersion() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		if v := bi.Main.Version; v != "" && v != "(devel)" {
			return v
		}
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				return "devel-" + s.Value[:12]
			}
		}
	}
	return "devel"
}
