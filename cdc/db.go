package cdc

import (
	"context"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Querier runs a query returning one row; *pgx.Conn and *pgxpool.Pool implement it.
type Querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// DB runs the session's ordinary (non-replication) queries: preflight and publication
// checks, slot state, primary keys, heartbeats, the oldest replayable position. The
// session uses it from several goroutines at once, so it must be safe for concurrent
// use: a *pgxpool.Pool is (a single *pgx.Conn is not).
type DB interface {
	Querier
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}
