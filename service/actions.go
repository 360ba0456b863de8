package service

import (
	"context"

	"github.com/VictoriaMetrics/metrics"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/rs/zerolog"

	"github.com/fraiseql/fraiseql-observers/configs"
	"github.com/fraiseql/fraiseql-observers/pipeline"
	"github.com/fraiseql/fraiseql-observers/sinks"
)

// Actions is the executor side of the service: it turns the configured observers
// into the pipeline's observers, with their conditions and the sinks of their
// actions. cmd/fraiseql-observers implements it with its registration table of
// action types.
type Actions interface {
	// Check reports every mistake in the observers' configuration (actions,
	// templates, conditions) without constructing a sink or connecting anywhere.
	Check(ctx context.Context) error
	// Build constructs the observers and the sinks of their actions.
	Build(ctx context.Context, deps ActionDeps) ([]*pipeline.Observer, error)
	// Templates returns the {{ }} templates of an action's configuration (the key
	// each is written under and its source), none when the action has none or its
	// keys do not decode. The column checks read them.
	Templates(a *configs.Action) []sinks.TemplateSource
	// PoolSize is the size of the service's pool of connections to the source
	// database: what the actions that call it through ActionDeps.Pool may use at
	// once, plus the service's own needs.
	PoolSize() int32
}

// ActionDeps is what the service lends the sinks it builds.
type ActionDeps struct {
	Pool    *pgxpool.Pool // the source database (database actions without a DSN of their own)
	Metrics *metrics.Set  // the service's metrics, served on /metrics
	Logger  zerolog.Logger
}
