package service

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/fraiseql/fraiseql-observers/configs"
	"github.com/fraiseql/fraiseql-observers/decoder"
)

// replayOldImageProblems explains, for each observer in scope (all when observer is
// "") whose condition reads old values of UPDATEs or DELETEs on a table without
// REPLICA IDENTITY FULL, why a replay cannot evaluate it faithfully: PostgreSQL logs
// only the key of such rows, the old values came from the row cache, and a replay
// starts the cache empty.
func (s *Service) replayOldImageProblems(ctx context.Context, observer string) ([]string, error) {
	var out []string
	for _, o := range s.cfg.Observers {
		if (observer != "" && o.Name != observer) || o.Condition == "" || !usesOld.MatchString(o.Condition) ||
			!(slices.Contains(o.Ops, decoder.OpUpdate) || slices.Contains(o.Ops, decoder.OpDelete)) {
			continue
		}
		tables, err := tablesWithoutFullIdentity(ctx, s.pool, s.cfg.Source.Publication, o)
		if err != nil {
			return nil, err
		}
		if len(tables) == 0 {
			continue
		}
		if len(tables) > 3 {
			tables = append(tables[:3], fmt.Sprintf("%d more", len(tables)-3))
		}
		out = append(out, fmt.Sprintf("observer %s's condition reads old values, which %s logs only with REPLICA IDENTITY FULL: "+
			"a replay starts the row cache empty, so a replayed UPDATE or DELETE of a row not changed earlier in the replayed range has no old values, "+
			"its condition cannot be evaluated and its actions do not run for it (a condition error); ALTER TABLE ... REPLICA IDENTITY FULL makes replays faithful",
			o.Name, strings.Join(tables, ", ")))
	}
	return out, nil
}

// tablesWithoutFullIdentity returns the observer's table when its replica identity is
// not FULL, or for a wildcard observer the published tables whose is not.
func tablesWithoutFullIdentity(ctx context.Context, q interface {
	Query(context.Context, string, ...any) (pgx.Rows, error)
}, publication string, o *configs.Observer) ([]string, error) {
	var rows pgx.Rows
	var err error
	if o.Wildcard || o.Table.Table == "" {
		rows, err = q.Query(ctx, `
SELECT pt.schemaname || '.' || pt.tablename FROM pg_publication_tables pt
JOIN pg_namespace n ON n.nspname = pt.schemaname
JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = pt.tablename
WHERE pt.pubname = $1 AND c.relreplident <> 'f' ORDER BY 1`, publication)
	} else {
		rows, err = q.Query(ctx, `
SELECT n.nspname || '.' || c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = $1 AND c.relname = $2 AND c.relreplident <> 'f'`, o.Table.Schema, o.Table.Table)
	}
	if err != nil {
		return nil, fmt.Errorf("read the replica identity of observer %s's tables: %w", o.Name, err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("read the replica identity of observer %s's tables: %w", o.Name, err)
	}
	return names, nil
}

// joinSentences joins messages into one line.
func joinSentences(msgs []string) string { return strings.Join(msgs, "; ") }
