// Package pgschema creates the service's own tables only when they are missing, so a
// least-privileged role can run against tables an administrator created beforehand
// (CREATE ... IF NOT EXISTS still needs the CREATE privilege).
package pgschema

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Execer runs SQL; *pgxpool.Pool and *pgx.Conn implement it.
type Execer interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// Ensure runs ddl unless every table (unqualified names in schema) already exists.
// The schema itself is created first when it is missing.
func Ensure(ctx context.Context, db Execer, schema string, tables []string, ddl string) error {
	missing := false
	for _, t := range tables {
		var ok bool
		if err := db.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", pgx.Identifier{schema, t}.Sanitize()).Scan(&ok); err != nil {
			return fmt.Errorf("look up table %s.%s: %w", schema, t, err)
		}
		if !ok {
			missing = true
		}
	}
	if !missing {
		return nil
	}
	var hasSchema bool
	if err := db.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)", schema).Scan(&hasSchema); err != nil {
		return fmt.Errorf("look up schema %s: %w", schema, err)
	}
	if !hasSchema {
		if _, err := db.Exec(ctx, "CREATE SCHEMA IF NOT EXISTS "+pgx.Identifier{schema}.Sanitize()); err != nil {
			return fmt.Errorf("create schema %s: %w", schema, err)
		}
	}
	if _, err := db.Exec(ctx, ddl); err != nil {
		return err
	}
	return nil
}
