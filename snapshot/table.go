package snapshot

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/fraiseql/fraiseql-observers/cdc"
	"github.com/fraiseql/fraiseql-observers/decoder"
)

// table is a table as a snapshot reads it: its columns as the publication sends them
// and the key it is read in order of.
type table struct {
	OID         uint32
	Schema      string
	Name        string
	Partitioned bool
	// sig sums up the columns, the indexes and the replica identity: a chunk read
	// under another signature is read again by a snapshot that describes the table
	// anew (an ALTER TABLE between two chunks).
	sig string
	// Desc describes the columns as pgoutput would in a Relation message: the
	// published, non-generated columns, Key set on the replica identity columns.
	Desc decoder.Relation
	// EventKey is the primary key, the key of events under REPLICA IDENTITY FULL (as
	// the stream's key lookup gives it); nil without one.
	EventKey []string
	// ChunkKey are the columns the table is read in order of, in chunks, and by which
	// the rows of a chunk are matched with streamed changes: the replica identity key
	// (primary key, or the REPLICA IDENTITY index), else a unique index over NOT NULL
	// columns.
	ChunkKey []string
	// KeyIndex holds the positions of ChunkKey in Desc.Columns.
	KeyIndex []int
}

// String returns "schema.table".
func (t *table) String() string { return t.Schema + "." + t.Name }

// from returns the table quoted for a FROM clause: with ONLY unless it is partitioned,
// so that the rows of inheritance children, which the publication sends under their
// own names, are not read as this table's.
func (t *table) from() string {
	if t.Partitioned {
		return pgx.Identifier{t.Schema, t.Name}.Sanitize()
	}
	return "ONLY " + pgx.Identifier{t.Schema, t.Name}.Sanitize()
}

// splitTable parses "schema.table" or "table" (schema public); names are
// case-sensitive, as in observers' entity.
func splitTable(s string) (schema, name string, err error) {
	s = strings.TrimSpace(s)
	schema, name, ok := strings.Cut(s, ".")
	if !ok {
		schema, name = "public", s
	}
	if schema == "" || name == "" || strings.Contains(name, ".") {
		return "", "", fmt.Errorf("%q is not a table name: give schema.table", s)
	}
	return schema, name, nil
}

// describe reads the table from the catalog and checks that a snapshot can read it:
// it exists, the publication sends its changes under its own name, and it has a key.
// Problems an operator must fix are *RequestError.
func describe(ctx context.Context, q *pgx.Conn, publication, schema, name string) (*table, error) {
	t := &table{Schema: schema, Name: name}
	var kind, ident string
	err := q.QueryRow(ctx, `
SELECT c.oid, c.relkind::text, c.relreplident::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p')`, schema, name).Scan(&t.OID, &kind, &ident)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, &RequestError{Field: "table", Msg: fmt.Sprintf("table %s does not exist", t)}
	}
	if err != nil {
		return nil, fmt.Errorf("read table %s: %w", t, err)
	}
	t.Partitioned = kind == "p"
	var readable bool
	if err := q.QueryRow(ctx, `SELECT has_table_privilege($1::oid, 'SELECT')`, t.OID).Scan(&readable); err != nil {
		return nil, fmt.Errorf("read the privileges on %s: %w", t, err)
	}
	if !readable {
		return nil, &RequestError{Field: "table", Msg: fmt.Sprintf("the service's role may not read %s: GRANT SELECT ON %s TO the role in source.dsn", t,
			pgx.Identifier{schema, name}.Sanitize())}
	}
	var published bool
	if err := q.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_publication_tables WHERE pubname = $1 AND schemaname = $2 AND tablename = $3)`,
		publication, schema, name).Scan(&published); err != nil {
		return nil, fmt.Errorf("read publication %s: %w", publication, err)
	}
	if !published {
		msg := fmt.Sprintf("%s is not in publication %s", t, publication)
		if why, err := cdc.ObservedTableProblem(ctx, q, publication, t.String()); err == nil && why != "" {
			msg = why
		}
		return nil, &RequestError{Field: "table", Msg: msg + ": a snapshot's rows are matched with the table's streamed changes, which this service does not receive"}
	}

	// Columns as pgoutput sends them: not dropped, not generated, in the publication's
	// column list when it has one (PostgreSQL 15).
	var listed []string
	var version int
	if err := q.QueryRow(ctx, `SELECT current_setting('server_version_num')::int`).Scan(&version); err != nil {
		return nil, fmt.Errorf("read server version: %w", err)
	}
	if version >= 150000 { // publication column lists
		rows, err := q.Query(ctx, `SELECT attnames FROM pg_publication_tables WHERE pubname = $1 AND schemaname = $2 AND tablename = $3`,
			publication, schema, name)
		if err != nil {
			return nil, fmt.Errorf("read publication columns of %s: %w", t, err)
		}
		for rows.Next() {
			var names []string
			if err := rows.Scan(&names); err != nil {
				rows.Close()
				return nil, fmt.Errorf("read publication columns of %s: %w", t, err)
			}
			listed = append(listed, names...)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("read publication columns of %s: %w", t, err)
		}
	}
	rows, err := q.Query(ctx, `
SELECT a.attname, a.atttypid, a.atttypmod, a.attnotnull FROM pg_attribute a
WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
ORDER BY a.attnum`, t.OID)
	if err != nil {
		return nil, fmt.Errorf("read columns of %s: %w", t, err)
	}
	notNull := map[string]bool{}
	for rows.Next() {
		var c decoder.Column
		var nn bool
		if err := rows.Scan(&c.Name, &c.TypeOID, &c.TypeMod, &nn); err != nil {
			rows.Close()
			return nil, fmt.Errorf("read columns of %s: %w", t, err)
		}
		if len(listed) > 0 && !slices.Contains(listed, c.Name) {
			continue
		}
		notNull[c.Name] = nn
		t.Desc.Columns = append(t.Desc.Columns, c)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read columns of %s: %w", t, err)
	}

	// Indexes: the primary key, the replica identity index, unique indexes.
	type index struct {
		cols                  []string
		primary, ident, whole bool
	}
	var indexes []index
	rows, err = q.Query(ctx, `
SELECT i.indisprimary, i.indisreplident, i.indisunique AND i.indpred IS NULL AND i.indexprs IS NULL AND i.indimmediate,
       array(SELECT a.attname FROM unnest(i.indkey::int2[]) WITH ORDINALITY k(attnum, ord)
             JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum ORDER BY k.ord)
FROM pg_index i WHERE i.indrelid = $1 AND i.indisvalid AND i.indisunique
ORDER BY i.indisprimary DESC, cardinality(i.indkey::int2[]), i.indexrelid`, t.OID)
	if err != nil {
		return nil, fmt.Errorf("read indexes of %s: %w", t, err)
	}
	for rows.Next() {
		var ix index
		if err := rows.Scan(&ix.primary, &ix.ident, &ix.whole, &ix.cols); err != nil {
			rows.Close()
			return nil, fmt.Errorf("read indexes of %s: %w", t, err)
		}
		indexes = append(indexes, ix)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read indexes of %s: %w", t, err)
	}
	var pk, identIdx, unique []string
	for _, ix := range indexes {
		usable := ix.whole && !slices.ContainsFunc(ix.cols, func(c string) bool { return !notNull[c] })
		switch {
		case ix.primary:
			pk = ix.cols
		case ix.ident:
			identIdx = ix.cols
		}
		if usable && unique == nil {
			unique = ix.cols
		}
	}
	t.EventKey = pk
	var flagged []string // the columns pgoutput flags as key
	switch ident {
	case "d":
		flagged, t.ChunkKey = pk, pk
	case "i":
		flagged, t.ChunkKey = identIdx, identIdx
	case "f":
		for _, c := range t.Desc.Columns {
			flagged = append(flagged, c.Name)
		}
		t.ChunkKey = pk
	case "n":
		t.ChunkKey = pk
	}
	if t.ChunkKey == nil {
		t.ChunkKey = unique
	}
	if t.ChunkKey == nil {
		return nil, &RequestError{Field: "table", Msg: fmt.Sprintf("%s has no primary key and no unique index over NOT NULL columns: "+
			"a snapshot reads a table in key order, in chunks, and matches its rows with streamed changes by that key "+
			"(ctid is not used: it changes when a row is updated); add a primary key", t)}
	}
	for _, k := range t.ChunkKey {
		i := slices.IndexFunc(t.Desc.Columns, func(c decoder.Column) bool { return c.Name == k })
		if i < 0 {
			return nil, &RequestError{Field: "table", Msg: fmt.Sprintf("key column %q of %s is not in publication %s's column list", k, t, publication)}
		}
		t.KeyIndex = append(t.KeyIndex, i)
	}
	for i := range t.Desc.Columns {
		t.Desc.Columns[i].Key = slices.Contains(flagged, t.Desc.Columns[i].Name)
	}
	if t.sig, err = signature(ctx, q, t.OID); err != nil {
		return nil, err
	}
	t.Desc.ID, t.Desc.Namespace, t.Desc.Name = t.OID, schema, name
	t.Desc.ReplicaIdentity = ident[0]
	return t, nil
}

// querier runs a query: a connection or a transaction.
type querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// signature sums up what describe reads of table oid.
func signature(ctx context.Context, q querier, oid uint32) (string, error) {
	var sig string
	err := q.QueryRow(ctx, `
SELECT c.relreplident::text || c.relkind::text
       || coalesce((SELECT string_agg(a.attname || ':' || a.atttypid || ':' || a.atttypmod || ':' || a.attnotnull || ':' || a.attgenerated::text, ',' ORDER BY a.attnum)
                    FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped), '')
       || coalesce((SELECT string_agg(i.indexrelid || ':' || i.indisprimary || ':' || i.indisreplident || ':' || i.indisvalid, ',' ORDER BY i.indexrelid)
                    FROM pg_index i WHERE i.indrelid = c.oid), '')
FROM pg_class c WHERE c.oid = $1`, oid).Scan(&sig)
	if err != nil {
		return "", fmt.Errorf("read the definition of table %d: %w", oid, err)
	}
	return sig, nil
}

// relation returns the decoder's descriptor of the table, for Assembler.Read.
func (t *table) relation() (*decoder.Relation, error) {
	return decoder.NewRelation(t.Desc, t.EventKey)
}

// sameShape reports whether u reads and decodes like t (a chunk of u may follow t's).
func (t *table) sameShape(u *table) bool {
	return t.OID == u.OID && slices.Equal(t.Desc.Columns, u.Desc.Columns) && slices.Equal(t.ChunkKey, u.ChunkKey) &&
		slices.Equal(t.EventKey, u.EventKey) && t.Desc.ReplicaIdentity == u.Desc.ReplicaIdentity
}
