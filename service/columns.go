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
// table is a condition error), each column its condition or one of its actions'
// templates reads that is not replicated (a generated column before PostgreSQL 18,
// or a column that publication leaves out: its column list, or from 18 generated
// columns it does not publish; the condition or the template fails for every event
// of the table), and each column a template reads that the table does not have.
// templates returns an action's templates (Actions.Templates; nil checks the
// condition only). It returns nothing for observers without a table, and for a
// table that does not exist (reported by the table checks).
func ColumnProblems(ctx context.Context, q querier, publication string, o *configs.Observer, templates func(*configs.Action) []sinks.TemplateSource) ([]string, error) {
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
	cols, unreplicated, err := tableColumns(ctx, q, publication, o.Table)
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
		case unreplicated[ref.Name] != "":
			out = append(out, fmt.Sprintf("%s: observer %s's condition reads column %q, %s, so every event of the table fails the condition (and goes to the DLQ)",
				pos, o.Name, ref.Name, unreplicated[ref.Name]))
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
		if reported[id] || (unreplicated[r.ref.Name] == "" && slices.Contains(cols, r.ref.Name)) {
			continue
		}
		reported[id] = true
		pos := ExprPos(r.action.KeyPos(r.key), &eval.Error{Line: r.ref.Line, Column: r.ref.Column})
		if why := unreplicated[r.ref.Name]; why != "" {
			out = append(out, fmt.Sprintf("%s: observer %s's action %s reads column %q in %s, %s, so the template fails for every event of the table (and the event goes to the DLQ)",
				pos, o.Name, r.action.ID, r.ref.Name, r.key, why))
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

// tableColumns returns the columns of table in order, and why each column that
// publication does not replicate is not replicated. pgoutput sends generated columns
// only from PostgreSQL 18, and there only when the publication publishes them
// (publish_generated_columns) or lists them; from PostgreSQL 15 a publication may
// list the columns it replicates (pg_publication_tables.attnames).
func tableColumns(ctx context.Context, q querier, publication string, table configs.TableRef) ([]string, map[string]string, error) {
	rows, err := q.Query(ctx, `
SELECT a.attname, a.attgenerated = 's', current_setting('server_version_num')::int,
       CASE WHEN current_setting('server_version_num')::int >= 150000 THEN
         (SELECT to_jsonb(pt) -> 'attnames' FROM pg_publication_tables pt
          WHERE pt.pubname = $3 AND pt.schemaname = n.nspname AND pt.tablename = c.relname)
       END
FROM pg_attribute a
JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = $1 AND c.relname = $2 AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum`, table.Schema, table.Table, publication)
	if err != nil {
		return nil, nil, fmt.Errorf("read the columns of %s: %w", table, err)
	}
	var cols []string
	unreplicated := map[string]string{}
	for rows.Next() {
		var name string
		var generated bool
		var version int
		var published []string // nil: the table is not in the publication, or before 15
		if err := rows.Scan(&name, &generated, &version, &published); err != nil {
			rows.Close()
			return nil, nil, fmt.Errorf("read the columns of %s: %w", table, err)
		}
		cols = append(cols, name)
		switch {
		case generated && version < 180000:
			unreplicated[name] = fmt.Sprintf("a generated column of %s: generated columns are not replicated by this PostgreSQL version", table)
		case published != nil && !slices.Contains(published, name) && generated:
			unreplicated[name] = fmt.Sprintf("a generated column of %s that publication %s does not publish (publish_generated_columns, or list it)", table, publication)
		case published != nil && !slices.Contains(published, name):
			unreplicated[name] = fmt.Sprintf("a column of %s that publication %s does not replicate (its column list for the table leaves it out)", table, publication)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, nil, fmt.Errorf("read the columns of %s: %w", table, err)
	}
	return cols, unreplicated, nil
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
