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

// AddColumn adds a column to table (a quoted, schema-qualified name, as
// pgx.Identifier.Sanitize returns it) unless it has one of that name: a table that an
// earlier version created gains the column, and a role that does not own the table
// (which may not ALTER it) runs against one where an administrator added it.
// definition is the column's type and constraints ("bigint NOT NULL DEFAULT 0").
func AddColumn(ctx context.Context, db Execer, table, column, definition string) error {
	var has bool
	if err := db.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass($1) AND attname = $2 AND NOT attisdropped)`,
		table, column).Scan(&has); err != nil {
		return fmt.Errorf("inspect %s: %w", table, err)
	}
	if has {
		return nil
	}
	if _, err := db.Exec(ctx, fmt.Sprintf(`ALTER TABLE %s ADD COLUMN IF NOT EXISTS %s %s`, table, pgx.Identifier{column}.Sanitize(), definition)); err != nil {
		return fmt.Errorf("add column %s to %s: %w", column, table, err)
	}
	return nil
}
