package main

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/VictoriaMetrics/metrics"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/rs/zerolog"

	"github.com/fraiseql/fraiseql-observers/configs"
	"github.com/fraiseql/fraiseql-observers/eval"
	"github.com/fraiseql/fraiseql-observers/pipeline"
	"github.com/fraiseql/fraiseql-observers/service"
	"github.com/fraiseql/fraiseql-observers/sinks"
)

// builder turns configured observers into pipeline observers with real sinks.
type builder struct {
	cfg  *configs.Config
	log  zerolog.Logger
	set  *metrics.Set
	pool *pgxpool.Pool
	// validateOnly checks every action's configuration without constructing sinks
	// (validate-config, and start before it connects).
	validateOnly bool
	// warnings collects the actions' references to environment variables that are
	// not set, for validate-config of a configuration loaded with
	// configs.Options.DeferEnv.
	warnings []configs.Warning
}

// observers builds every observer; the error lists every problem, each at its
// file:line:column.
func (b *builder) observers(ctx context.Context) ([]*pipeline.Observer, error) {
	var errs []error
	var out []*pipeline.Observer
	for _, co := range b.cfg.Observers {
		o, err := b.observer(ctx, co)
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

func (b *builder) observer(ctx context.Context, co *configs.Observer) (*pipeline.Observer, error) {
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
		if cond, err := compileCondition(co, b.cfg.Caching.Enabled, evalBudget(b.cfg)); err != nil {
			errs = append(errs, err)
		} else {
			o.Condition = cond
		}
	}
	for _, ca := range co.Actions {
		sink, batch, err := b.action(ctx, co, ca)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if b.validateOnly {
			continue
		}
		o.Actions = append(o.Actions, &pipeline.Action{
			ID:          ca.ID,
			Type:        ca.Type,
			Sink:        sink,
			Retry:       retry,
			OnFailure:   failure,
			Concurrency: actionConcurrency(b.cfg, ca),
			Ordered:     ca.Ordered || !b.cfg.ConcurrentExecution.Enabled,
			BatchSize:   batch,
		})
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return o, nil
}

// action builds the sink of one action of co (in validateOnly mode, only checks
// it) and returns it with the action's batch size: its batch_size (for a type that
// batches; pipeline.batch_size when it has none), at most pipeline.batch_size.
func (b *builder) action(ctx context.Context, co *configs.Observer, ca *configs.Action) (pipeline.Sink, int, error) {
	t, ok := actionTypes[ca.Type]
	if !ok {
		return nil, 0, &configs.Error{Pos: ca.TypePos, Msg: fmt.Sprintf("action %s: unknown action type %q%s",
			ca.ID, ca.Type, configs.DidYouMean(ca.Type, actionTypeNames()))}
	}
	unset := ca.Unset()
	if len(unset) > 0 && !b.validateOnly {
		// A sink is not built without the values of its variables.
		errs := &configs.Errors{}
		for _, u := range unset {
			errs.List = append(errs.List, &configs.Error{Pos: u.Pos, Msg: "action " + ca.ID + ": " + u.String()})
		}
		return nil, 0, errs
	}
	for _, u := range unset {
		b.warnings = append(b.warnings, configs.Warning{Pos: u.Pos, Msg: "action " + ca.ID + ": " + u.String() + " (its value is not checked)"})
	}
	log := b.log.With().Str("action", ca.ID).Logger()
	deps := sinks.Deps{
		ActionID:    ca.ID,
		Logger:      log,
		Metrics:     b.set,
		Templates:   sinks.Templates{Meta: eval.Meta{Entity: observerEntity(co)}, Budget: evalBudget(b.cfg)},
		DB:          b.pool,
		Concurrency: actionConcurrency(b.cfg, ca),
	}
	res, err := t.build(ctx, ca, deps, b.validateOnly)
	for _, w := range res.warnings {
		var ke *sinks.KeyError
		where := ca.Pos
		msg := w.Error()
		if errors.As(w, &ke) {
			top, _, _ := strings.Cut(ke.Key, ".")
			where, msg = ca.KeyPos(top), ke.Err.Error()
		}
		log.Warn().Str("where", where.String()).Msg(msg)
	}
	if err != nil {
		return nil, 0, sinkConfigErrors(ca, err, unset)
	}
	batch := res.batch
	if batch == 0 || batch > b.cfg.Pipeline.BatchSize {
		batch = b.cfg.Pipeline.BatchSize
	}
	return res.sink, batch, nil
}

// actions is the executor side of the service (service.Actions): the observers
// built with this package's registration table of action types.
type actions struct {
	cfg *configs.Config
	log zerolog.Logger
}

// Check implements service.Actions.
func (a actions) Check(ctx context.Context) error {
	_, err := (&builder{cfg: a.cfg, log: a.log, set: metrics.NewSet(), validateOnly: true}).observers(ctx)
	return err
}

// Templates implements service.Actions.
func (a actions) Templates(ca *configs.Action) []sinks.TemplateSource {
	if t, ok := actionTypes[ca.Type]; ok {
		return t.templates(ca)
	}
	return nil
}

// Build implements service.Actions.
func (a actions) Build(ctx context.Context, deps service.ActionDeps) ([]*pipeline.Observer, error) {
	return (&builder{cfg: a.cfg, log: deps.Logger, set: deps.Metrics, pool: deps.Pool}).observers(ctx)
}

// PoolSize implements service.Actions.
func (a actions) PoolSize() int32 { return poolSize(a.cfg) }

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
// without a DSN of its own), plus a few for checkpoints, the DLQ, the monitors and the
// replication session's own queries (heartbeats, primary keys, slot checks).
func poolSize(cfg *configs.Config) int32 {
	widest := 0
	for _, o := range cfg.Observers {
		for _, a := range o.Actions {
			if t, ok := actionTypes[a.Type]; ok && t.usesDB(a) {
				widest = max(widest, actionConcurrency(cfg, a))
			}
		}
	}
	return int32(max(6, cfg.ConcurrentExecution.MaxConcurrency, widest+6))
}

func actionTypeNames() []string {
	out := make([]string, 0, len(actionTypes))
	for t := range actionTypes {
		out = append(out, t)
	}
	return out
}
