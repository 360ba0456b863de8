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
	"github.com/fraiseql/fraiseql-observers/sinks"
)

// querier is what the column check needs of a connection or pool.
type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// ColumnProblems reports the columns an observer reads by name that can never hold
// a value: each column its condition reads that its table does not have (a typo, or
// a column since dropped: such a condition never matches, and every event of the
// table is a condition error), and each generated column its condition or one of its
// actions' templates reads (PostgreSQL before version 18 does not replicate them, so
// the condition or the template fails for every event of the table), and each
// column a template reads that the table does not have. templates
// returns an action's templates (Actions.Templates; nil checks the condition only).
// It returns nothing for observers without a table, and for a table that does not
// exist (reported by the table checks).
func ColumnProblems(ctx context.Context, q querier, o *configs.Observer, templates func(*configs.Action) []sinks.TemplateSource) ([]string, error) {
	if o.Wildcard || o.Table.Table == "" || (len(o.Ops) == 1 && o.Ops[0] == decoder.OpMessage) {
		return nil, nil
	}
	var cond []eval.ColumnRef
	if o.Condition != "" {
		if c, err := eval.CompileCondition(o.Condition, eval.Options{}); err == nil {
			cond = c.Columns() // a compile error is reported by the configuration check
		}
	}
	reads := templateReads(o, templates)
	if len(cond) == 0 && len(reads) == 0 {
		return nil, nil
	}
	cols, generated, err := tableColumns(ctx, q, o.Table)
	if err != nil || len(cols) == 0 {
		return nil, err
	}
	var out []string
	reported := map[string]bool{}
	for _, ref := range cond {
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
	for _, r := range reads {
		id := r.action.ID + " " + r.key + " " + r.ref.Name
		if reported[id] || (!generated[r.ref.Name] && slices.Contains(cols, r.ref.Name)) {
			continue
		}
		reported[id] = true
		pos := ExprPos(r.action.KeyPos(r.key), &eval.Error{Line: r.ref.Line, Column: r.ref.Column})
		if generated[r.ref.Name] {
			out = append(out, fmt.Sprintf("%s: observer %s's action %s reads column %q in %s, a generated column of %s: generated columns are not replicated by this PostgreSQL version, so the template fails for every event of the table (and the event goes to the DLQ)",
				pos, o.Name, r.action.ID, r.ref.Name, r.key, o.Table))
			continue
		}
		out = append(out, fmt.Sprintf("%s: observer %s's action %s reads column %q in %s, which %s does not have, so the template fails for every event of the table (and the event goes to the DLQ) unless the read is optional (?. or ??)%s",
			pos, o.Name, r.action.ID, r.ref.Name, r.key, o.Table, configs.DidYouMean(r.ref.Name, cols)))
	}
	return out, nil
}

// templateRead is a column an action's template reads.
type templateRead struct {
	action *configs.Action
	key    string // the template's key ("body_template")
	ref    eval.ColumnRef
}

// templateReads lists the columns o's actions' templates read, action by action.
// A template that does not compile is skipped: the configuration check reports it.
func templateReads(o *configs.Observer, templates func(*configs.Action) []sinks.TemplateSource) []templateRead {
	if templates == nil {
		return nil
	}
	var out []templateRead
	for _, a := range o.Actions {
		for _, ts := range templates(a) {
			t, err := eval.CompileTemplate(ts.Src, eval.EscapeNone, eval.Options{})
			if err != nil {
				continue
			}
			for _, ref := range t.Columns() {
				out = append(out, templateRead{action: a, key: ts.Key, ref: ref})
			}
		}
	}
	return out
}

// tableColumns returns the columns of table in order, and which of them are
// generated columns this server does not replicate: pgoutput sends generated
// columns only from PostgreSQL 18 (publish_generated_columns).
func tableColumns(ctx context.Context, q querier, table configs.TableRef) ([]string, map[string]bool, error) {
	rows, err := q.Query(ctx, `
SELECT a.attname, a.attgenerated = 's' AND current_setting('server_version_num')::int < 180000
FROM pg_attribute a
JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = $1 AND c.relname = $2 AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum`, table.Schema, table.Table)
	if err != nil {
		return nil, nil, fmt.Errorf("read the columns of %s: %w", table, err)
	}
	var cols []string
	generated := map[string]bool{}
	for rows.Next() {
		var name string
		var gen bool
		if err := rows.Scan(&name, &gen); err != nil {
			rows.Close()
			return nil, nil, fmt.Errorf("read the columns of %s: %w", table, err)
		}
		cols = append(cols, name)
		generated[name] = gen
	}
	if err := rows.Err(); err != nil {
		return nil, nil, fmt.Errorf("read the columns of %s: %w", table, err)
	}
	return cols, generated, nil
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
