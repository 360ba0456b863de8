package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"github.com/fraiseql/fraiseql-observers/configs"
	"github.com/fraiseql/fraiseql-observers/internal/words"
	"github.com/fraiseql/fraiseql-observers/service"
)

func newValidateCmd(g *globals) *cobra.Command {
	var detailed bool
	c := &cobra.Command{
		Use:   "validate-config [FILE] [--detailed]",
		Short: "Check a configuration file (and, with --detailed, the database it points to)",
		Long: `Load FILE (default: --config, config.yaml) and check it the way start does: YAML syntax,
keys and values, every observer's condition and every action's settings, without connecting
to anything and without needing the environment: a variable the file refers to that is not
set is a warning, and the value it would give is not checked. Every problem is printed as file:line:column: message. On success it prints
"Configuration is valid" and a summary; otherwise it exits with code 2.

--detailed needs every variable, as start does, and also connects to the source database and checks wal_level, the role's REPLICATION
attribute, the publication and the slot, that every observed table exists, is published
under its own name, has the columns its observers' conditions read, and has the replica
identity its observers need (conditions that read old values need REPLICA
IDENTITY FULL, or the row cache for rows seen before), and that the role may use the
service's tables in state.schema. With transport.type nats it also connects to NATS and
checks the stream (an existing one must fit: subjects, work-queue retention, duplicate window,
partitions) and the executors' ownership of the partitions, changing nothing. A failed check
exits with code 3.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			path := g.config
			if len(args) == 1 {
				path = args[0]
			}
			return runValidate(cmd.Context(), g, path, detailed)
		},
	}
	c.Flags().BoolVarP(&detailed, "detailed", "d", false, "also connect and check the database, publication, slot, tables and privileges")
	return c
}

// problem is one configuration error or warning with its position.
type problem struct {
	File    string `json:"file"`
	Line    int    `json:"line"`
	Column  int    `json:"column"`
	Message string `json:"message"`
}

func (p problem) String() string {
	return configs.Pos{File: p.File, Line: p.Line, Column: p.Column}.String() + ": " + p.Message
}

type validation struct {
	Valid     bool            `json:"valid"`
	File      string          `json:"file"`
	Errors    []problem       `json:"errors"`
	Warnings  []problem       `json:"warnings"`
	Summary   *summary        `json:"summary,omitempty"`
	Checks    []service.Check `json:"checks,omitempty"`
	ChecksRun bool            `json:"checks_run"`
}

type summary struct {
	ListenerID  string         `json:"listener_id"`
	Slot        string         `json:"slot"`
	Publication string         `json:"publication"`
	Observers   int            `json:"observers"`
	Actions     int            `json:"actions"`
	ActionTypes map[string]int `json:"action_types"`
}

// leaves flattens joined errors into their parts.
func leaves(err error, out []error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range j.Unwrap() {
			out = leaves(e, out)
		}
		return out
	}
	var ce *codeError
	if errors.As(err, &ce) && ce.err != err { //nolint:errorlint // identity check: stop when the code error wraps itself
		return leaves(ce.err, out)
	}
	return append(out, err)
}

func toProblem(err error, file string) problem {
	var ce *configs.Error
	if errors.As(err, &ce) {
		return problem{File: ce.Pos.File, Line: ce.Pos.Line, Column: ce.Pos.Column, Message: ce.Msg}
	}
	return problem{File: file, Message: err.Error()}
}

func runValidate(ctx context.Context, g *globals, path string, detailed bool) error {
	asJSON, err := g.json()
	if err != nil {
		return err
	}
	if _, err := os.Stat(path); err != nil {
		return usageErr("validate-config: %v", err)
	}
	v := validation{File: path, Errors: []problem{}, Warnings: []problem{}}
	// Without --detailed nothing needs the environment: a variable that is not set
	// is a warning and its value is not checked (CI runs this without secrets).
	// --detailed checks the database with everything start reads.
	cfg, warnings, err := configs.LoadWith(path, configs.Options{DeferEnv: !detailed})
	if cfg != nil {
		for _, u := range cfg.Unset() {
			warnings = append(warnings, configs.Warning{Pos: u.Pos, Msg: u.String() + " (its value is not checked)"})
		}
	}
	if err != nil {
		var errs *configs.Errors
		if !errors.As(err, &errs) {
			return &codeError{code: exitConfig, err: err}
		}
		for _, e := range errs.List {
			v.Errors = append(v.Errors, toProblem(e, path))
		}
	} else {
		// What start checks before connecting: the transport, conditions and every
		// action's settings.
		if _, err := service.TransportConfig(cfg); err != nil {
			for _, e := range leaves(err, nil) {
				v.Errors = append(v.Errors, toProblem(e, path))
			}
		}
		for _, u := range cfg.Transport.Unset() {
			warnings = append(warnings, configs.Warning{Pos: u.Pos, Msg: "transport." + u.String() + " (its value is not checked)"})
		}
		b := &builder{cfg: cfg, log: newCLILogger(g), set: newSet(), validateOnly: true}
		if _, err := b.observers(ctx); err != nil {
			for _, e := range leaves(err, nil) {
				v.Errors = append(v.Errors, toProblem(e, path))
			}
		}
		warnings = append(warnings, b.warnings...)
	}
	sort.SliceStable(warnings, func(i, j int) bool {
		a, b := warnings[i].Pos, warnings[j].Pos
		return a.Line < b.Line || (a.Line == b.Line && a.Column < b.Column)
	})
	for _, w := range warnings {
		v.Warnings = append(v.Warnings, problem{File: w.Pos.File, Line: w.Pos.Line, Column: w.Pos.Column, Message: w.Msg})
	}
	sort.SliceStable(v.Errors, func(i, j int) bool {
		a, b := v.Errors[i], v.Errors[j]
		return a.Line < b.Line || (a.Line == b.Line && a.Column < b.Column)
	})
	v.Valid = len(v.Errors) == 0
	if v.Valid {
		s := &summary{ListenerID: cfg.ListenerID, Slot: cfg.Source.Slot, Publication: cfg.Source.Publication,
			Observers: len(cfg.Observers), ActionTypes: map[string]int{}}
		for _, o := range cfg.Observers {
			for _, a := range o.Actions {
				s.Actions++
				s.ActionTypes[a.Type]++
			}
		}
		v.Summary = s
		if detailed {
			v.ChecksRun = true
			v.Checks = append(service.RunChecks(ctx, cfg, actions{cfg: cfg}.Templates), service.TransportChecks(ctx, cfg)...)
		}
	}
	failed := 0
	for _, c := range v.Checks {
		if c.Status == service.CheckFail {
			failed++
		}
	}
	if asJSON {
		g.printJSON(v)
	} else {
		termSafe(&v)
		printValidation(g, v)
	}
	switch {
	case !v.Valid:
		return &codeError{code: exitConfig, err: &silentError{fmt.Errorf("%d configuration errors", len(v.Errors))}}
	case failed > 0:
		return &codeError{code: exitPrefight, err: &silentError{fmt.Errorf("%d checks failed", failed)}}
	}
	return nil
}

func printValidation(g *globals, v validation) {
	w := g.stdout
	if !v.Valid {
		for _, p := range v.Errors {
			fmt.Fprintln(w, p.String())
		}
		for _, p := range v.Warnings {
			fmt.Fprintln(w, "warning:", p.String())
		}
		fmt.Fprintf(w, "Configuration is invalid: %s\n", words.Count(len(v.Errors), "error", "errors"))
		return
	}
	fmt.Fprintln(w, "Configuration is valid")
	s := v.Summary
	types := make([]string, 0, len(s.ActionTypes))
	for t, n := range s.ActionTypes {
		types = append(types, fmt.Sprintf("%s %d", t, n))
	}
	sort.Strings(types)
	fmt.Fprintf(w, "  listener %s, slot %s, publication %s\n", s.ListenerID, s.Slot, s.Publication)
	fmt.Fprintf(w, "  %s, %s %v\n", words.Count(s.Observers, "observer", "observers"), words.Count(s.Actions, "action", "actions"), types)
	for _, p := range v.Warnings {
		fmt.Fprintln(w, "warning:", p.String())
	}
	if v.ChecksRun {
		printChecks(w, v.Checks)
	}
}

func printChecks(w io.Writer, checks []service.Check) {
	fmt.Fprintln(w, "Database checks:")
	counts := map[string]int{}
	for _, c := range checks {
		counts[c.Status]++
		fmt.Fprintf(w, "  %-4s  %s\n", strings.ToUpper(c.Status), c.Message)
	}
	fmt.Fprintf(w, "%s: %d ok, %s, %d failed\n", words.Count(len(checks), "check", "checks"), counts[service.CheckOK], words.Count(counts[service.CheckWarn], "warning", "warnings"), counts[service.CheckFail])
}
