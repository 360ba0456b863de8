package main

import (
	"context"
	"encoding/json"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fraiseql/fraiseql-observers/configs"
	"github.com/fraiseql/fraiseql-observers/pipeline"
	"github.com/fraiseql/fraiseql-observers/sinks/database"
)

func init() { actionBuilders["database"] = buildDatabase }

// databaseAction is the YAML shape of a `type: database` action
// (docs/actions/database.md).
type databaseAction struct {
	FunctionName string         `yaml:"function_name"`
	Params       any            `yaml:"params"` // a mapping, passed as JSON
	DSNEnv       configs.EnvRef `yaml:"dsn_env"`
	Timeout      time.Duration  `yaml:"timeout"`
	// BatchSize > 1 calls the function for up to that many events per transaction,
	// each in its own savepoint; 0 or 1 is one transaction per event.
	BatchSize int `yaml:"batch_size"`
}

func buildDatabase(b *builder, a *configs.Action) (pipeline.Sink, error) {
	var y databaseAction
	if err := a.Decode(&y); err != nil {
		return nil, err
	}
	cfg := database.Config{FunctionName: y.FunctionName, Timeout: y.Timeout}
	if y.Params != nil {
		if _, ok := y.Params.(map[string]any); !ok {
			return nil, a.ErrorfAt("params", "must be a mapping (it is passed as a JSON object)")
		}
		p, err := json.Marshal(y.Params)
		if err != nil {
			return nil, a.ErrorfAt("params", "cannot be written as JSON: %v", err)
		}
		cfg.Params = p
	}
	if err := cfg.Validate(); err != nil {
		return nil, sinkConfigError(a, err)
	}
	if y.BatchSize < 0 || y.BatchSize > 10000 {
		return nil, a.ErrorfAt("batch_size", "must be between 1 and 10000, not %d", y.BatchSize)
	}
	var pcfg *pgxpool.Config
	if y.DSNEnv.IsSet() {
		var err error
		if pcfg, err = pgxpool.ParseConfig(y.DSNEnv.Value()); err != nil {
			// pgx's error may quote the connection string, password included.
			return nil, a.ErrorfAt("dsn_env", "the connection string in %s cannot be parsed (%s): use a URL (postgres://user@host:5432/db?sslmode=verify-full) or key=value pairs",
				y.DSNEnv.Name, configs.RedactDSN(y.DSNEnv.Value()))
		}
	}
	if b.validateOnly {
		return nil, nil
	}
	opts := database.Options{Pool: b.pool}
	if pcfg != nil {
		if pcfg.ConnConfig.RuntimeParams["application_name"] == "" {
			pcfg.ConnConfig.RuntimeParams["application_name"] = "fraiseql-observers"
		}
		pcfg.MaxConns = int32(max(4, actionConcurrency(b.cfg, a)))
		// NewWithConfig does not connect (MinConns is 0); connections are made by
		// the first calls, each bounded by the action's timeout.
		pool, err := pgxpool.NewWithConfig(context.Background(), pcfg)
		if err != nil {
			return nil, a.ErrorfAt("dsn_env", "connection pool: %v", err)
		}
		opts = database.Options{Pool: pool, ClosePool: true}
	}
	var s pipeline.Sink
	var err error
	if y.BatchSize > 1 {
		s, err = database.NewBatch(cfg, opts, y.BatchSize)
	} else {
		s, err = database.New(cfg, opts)
	}
	if err != nil {
		if opts.ClosePool {
			opts.Pool.Close()
		}
		return nil, a.Errorf("%v", err)
	}
	return s, nil
}
