package main

import (
	"errors"
	"fmt"

	"github.com/VictoriaMetrics/metrics"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/rs/zerolog"

	"github.com/fraiseql/fraiseql-observers/configs"
	"github.com/fraiseql/fraiseql-observers/pipeline"
	"github.com/fraiseql/fraiseql-observers/sinks/file"
)

// builder turns configured observers into pipeline observers with real sinks.
type builder struct {
	cfg  *configs.Config
	log  zerolog.Logger
	set  *metrics.Set
	pool *pgxpool.Pool
	// validateOnly checks every action's configuration without constructing sinks
	// (validate-config); build functions then return a nil sink.
	validateOnly bool
}

// actionBuilders maps an action type to the function that decodes its configuration
// and constructs its sink.
var actionBuilders = map[string]func(b *builder, a *configs.Action) (pipeline.Sink, error){
	"file":   buildFile,
	"stdout": buildStdout,
}

// observers builds every observer; the error lists every problem, each at its
// file:line:column.
func (b *builder) observers() ([]*pipeline.Observer, error) {
	var errs []error
	var out []*pipeline.Observer
	for _, co := range b.cfg.Observers {
		o, err := b.observer(co)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out = append(out, o)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, &codeError{code: exitConfig, err: err}
	}
	return out, nil
}

func (b *builder) observer(co *configs.Observer) (*pipeline.Observer, error) {
	o := &pipeline.Observer{
		Name:          co.Name,
		Ops:           co.Ops,
		MessagePrefix: co.MessagePrefix,
	}
	if !co.Wildcard {
		o.Schema, o.Table = co.Table.Schema, co.Table.Table
	}
	backoff, err := pipeline.ParseBackoff(string(co.Retry.BackoffStrategy))
	if err != nil {
		return nil, &configs.Error{Pos: co.Pos, Msg: err.Error()}
	}
	failure, err := pipeline.ParseFailurePolicy(string(co.OnFailure))
	if err != nil {
		return nil, &configs.Error{Pos: co.Pos, Msg: err.Error()}
	}
	retry := pipeline.RetryPolicy{MaxAttempts: co.Retry.MaxAttempts, Strategy: backoff, Initial: co.Retry.InitialDelay, Max: co.Retry.MaxDelay}
	var errs []error
	if co.Condition != "" {
		if cond, err := compileCondition(co); err != nil {
			errs = append(errs, err)
		} else {
			o.Condition = cond
		}
	}
	for _, ca := range co.Actions {
		build, ok := actionBuilders[ca.Type]
		if !ok {
			errs = append(errs, &configs.Error{Pos: ca.TypePos, Msg: fmt.Sprintf("action %s: unknown action type %q%s",
				ca.ID, ca.Type, configs.DidYouMean(ca.Type, actionTypes()))})
			continue
		}
		sink, err := build(b, ca)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if b.validateOnly {
			continue
		}
		conc := actionConcurrency(b.cfg, ca)
		o.Actions = append(o.Actions, &pipeline.Action{
			ID:          ca.ID,
			Type:        ca.Type,
			Sink:        sink,
			Retry:       retry,
			OnFailure:   failure,
			Concurrency: conc,
			Ordered:     ca.Ordered || !b.cfg.ConcurrentExecution.Enabled,
			BatchSize:   b.cfg.Pipeline.BatchSize,
		})
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return o, nil
}

// actionConcurrency is the number of workers of action a: its own max_concurrency,
// or concurrent_execution.max_concurrency.
func actionConcurrency(cfg *configs.Config, a *configs.Action) int {
	if a.MaxConcurrency > 0 {
		return a.MaxConcurrency
	}
	return cfg.ConcurrentExecution.MaxConcurrency
}

// poolSize is the size of the service's pool of connections to the source database:
// enough for the widest action that calls SQL functions through it (a database action
// without a DSN of its own), plus a few for checkpoints, the DLQ and the monitors.
func poolSize(cfg *configs.Config) int32 {
	widest := 0
	for _, o := range cfg.Observers {
		for _, a := range o.Actions {
			if a.Type == "database" && !a.Has("dsn_env") {
				widest = max(widest, actionConcurrency(cfg, a))
			}
		}
	}
	return int32(max(4, cfg.ConcurrentExecution.MaxConcurrency, widest+4))
}

func actionTypes() []string {
	out := make([]string, 0, len(actionBuilders))
	for t := range actionBuilders {
		out = append(out, t)
	}
	return out
}

// decodeAction decodes the action's keys into cfg and runs its validation, reporting a
// validation failure at the action's position.
func decodeAction(a *configs.Action, cfg interface{ Validate() error }) error {
	if err := a.Decode(cfg); err != nil {
		return err
	}
	if err := cfg.Validate(); err != nil {
		return a.Errorf("%v", err)
	}
	return nil
}

func buildFile(b *builder, a *configs.Action) (pipeline.Sink, error) {
	var cfg file.Config
	if err := decodeAction(a, &cfg); err != nil {
		return nil, err
	}
	if cfg.Path == "-" {
		return nil, a.ErrorfAt("path", `use the stdout action to write to standard output`)
	}
	if b.validateOnly {
		return nil, nil
	}
	return file.New(cfg)
}

func buildStdout(b *builder, a *configs.Action) (pipeline.Sink, error) {
	cfg := file.Config{Path: "-", Fsync: file.FsyncNever}
	if err := a.Decode(&struct{}{}); err != nil {
		return nil, err
	}
	if b.validateOnly {
		return nil, nil
	}
	return file.New(cfg)
}
