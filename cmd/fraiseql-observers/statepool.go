package main

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fraiseql/fraiseql-observers/configs"
	"github.com/fraiseql/fraiseql-observers/service"
)

// statePool opens a small pool on the configuration's database for CLI commands.
func statePool(ctx context.Context, cfg *configs.Config) (*pgxpool.Pool, error) {
	// What reading the service's state uses (loaded with configs.Options.DeferEnv).
	if err := cfg.Need("source", "state", "listener_id"); err != nil {
		return nil, &codeError{code: exitConfig, err: err}
	}
	cc, err := service.ConnConfig(cfg)
	if err != nil {
		return nil, err
	}
	pcfg, err := pgxpool.ParseConfig("")
	if err != nil {
		return nil, err
	}
	pcfg.ConnConfig = cc.Copy()
	pcfg.ConnConfig.RuntimeParams["application_name"] = "fraiseql-observers-cli"
	pcfg.MaxConns = 2
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return nil, fmt.Errorf("connect to PostgreSQL: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("connect to PostgreSQL: %w", err)
	}
	return pool, nil
}
