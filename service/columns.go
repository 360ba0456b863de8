package service

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5"

	"github.com/fraiseql/fraiseql-observers/configs"
	"github.com/fraiseql/fraiseql-observers/decoder"
	"github.com/fraiseql/fraiseql-observers/eval"
)

// querier is what the column check needs of a connection or pool.
type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// ConditionColumnProblems reports each column an observer's condition reads by name
// that its table does not have (a typo, or a column since dropped): such a condition
// can never match, and every event of the table would be a condition error. It
// returns nothing for observers without a table or condition, and for a table that
// does not exist (reported by the table checks).
func ConditionColumnProblems(ctx context.Context, q querier, o *configs.Observer) ([]string, error) {
	if o.Wildcard || o.Table.Table == "" || o.Condition == "" || (len(o.Ops) == 1 && o.Ops[0] == decoder.OpMessage) {
		return nil, nil
	}
	c, err := eval.CompileCondition(o.Condition, eval.Options{})
	if err != nil || len(c.Columns()) == 0 {
		return nil, nil // a compile error is reported by the configuration check
	}
	// Generated columns are not sent by pgoutput before PostgreSQL 18
	// (publish_generated_columns): a condition reading one fails for every event.
	rows, err := q.Query(ctx, `
SELECT a.attname, a.attgenerated = 's' AND current_setting('server_version_num')::int < 180000
FROM pg_attribute a
JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = $1 AND c.relname = $2 AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum`, o.Table.Schema, o.Table.Table)
	if err != nil {
		return nil, fmt.Errorf("read the columns of %s: %w", o.Table, err)
	}
	var cols []string
	generated := map[string]bool{}
	for rows.Next() {
		var name string
		var gen bool
		if err := rows.Scan(&name, &gen); err != nil {
			rows.Close()
			return nil, fmt.Errorf("read the columns of %s: %w", o.Table, err)
		}
		cols = append(cols, name)
		generated[name] = gen
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read the columns of %s: %w", o.Table, err)
	}
	if len(cols) == 0 {
		return nil, nil
	}
	var out []string
	reported := map[string]bool{}
	for _, ref := range c.Columns() {
		if reported[ref.Name] {
			continue
		}
		pos := ExprPos(o.ConditionPos, &eval.Error{Line: ref.Line, Column: ref.Column})
		switch {
		case generated[ref.Name]:
			out = append(out, fmt.Sprintf("%s: observer %s's condition reads column %q, a generated column of %s: generated columns are not replicated by this PostgreSQL version, so every event of the table fails the condition (and goes to the DLQ)",
				pos, o.Name, ref.Name, o.Table))
		case slices.Contains(cols, ref.Name):
			continue
		default:
			out = append(out, fmt.Sprintf("%s: observer %s's condition reads column %q, which %s does not have, so it never matches%s",
				pos, o.Name, ref.Name, o.Table, configs.DidYouMean(ref.Name, cols)))
		}
		reported[ref.Name] = true
	}
	return out, nil
}

// ExprPos moves pos, where the expression's text starts in the file, to where an
// expression error points within the expression. A block scalar's lines share the
// first line's indentation; a quoted or plain scalar continued on further lines is
// only approximated there.
func ExprPos(pos configs.Pos, err error) configs.Pos {
	var ee *eval.Error
	if !errors.As(err, &ee) {
		return pos
	}
	pos.Line += max(ee.Line, 1) - 1
	pos.Column += ee.Column - 1
	return pos
}
