package service

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/fraiseql/fraiseql-observers/cdc"
	"github.com/fraiseql/fraiseql-observers/checkpoint"
	"github.com/fraiseql/fraiseql-observers/configs"
	"github.com/fraiseql/fraiseql-observers/decoder"
	"github.com/fraiseql/fraiseql-observers/dlq"
	"github.com/fraiseql/fraiseql-observers/internal/words"
	"github.com/fraiseql/fraiseql-observers/registry"
	"github.com/fraiseql/fraiseql-observers/sinks"
	"github.com/fraiseql/fraiseql-observers/transport"
)

// Check outcomes.
const (
	CheckOK   = "ok"
	CheckWarn = "warn"
	CheckFail = "fail"
)

// Check is one database check of validate-config --detailed.
type Check struct {
	Name    string `json:"name"`
	Status  string `json:"status"`
	Message string `json:"message"`
}

// usesOld matches conditions that read the old row: such observers need an old image.
var usesOld = regexp.MustCompile(`\bold\b|\bfield_changed(_to|_from)?\s*\(|\bchanges\b`)

// RunChecks connects to the configured database and checks what streaming needs.
// templates lists an action's {{ }} templates (Actions.Templates), whose columns are
// checked with the conditions' (ColumnProblems); nil checks conditions only.
func RunChecks(ctx context.Context, cfg *configs.Config, templates func(*configs.Action) []sinks.TemplateSource) []Check {
	var out []Check
	add := func(name, status, format string, args ...any) {
		out = append(out, Check{Name: name, Status: status, Message: fmt.Sprintf(format, args...)})
	}
	cc, err := ConnConfig(cfg)
	if err != nil {
		add("connect", CheckFail, "%v", err)
		return out
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	conn, err := pgx.ConnectConfig(ctx, cc)
	if err != nil {
		add("connect", CheckFail, "cannot connect to the source database: %v", err)
		return out
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var version, db, role string
	var walLevel string
	var canReplicate, super bool
	err = conn.QueryRow(ctx, `SELECT current_setting('server_version'), current_database(), current_user, current_setting('wal_level'),
       rolreplication, rolsuper FROM pg_roles WHERE rolname = current_user`).Scan(&version, &db, &role, &walLevel, &canReplicate, &super)
	if err != nil {
		add("connect", CheckFail, "cannot read server settings: %v", err)
		return out
	}
	add("connect", CheckOK, "connected to database %s as %s (PostgreSQL %s)", db, role, version)
	if walLevel == "logical" {
		add("wal_level", CheckOK, "wal_level is logical")
	} else {
		add("wal_level", CheckFail, "wal_level is %q: ALTER SYSTEM SET wal_level = logical; then restart PostgreSQL", walLevel)
	}
	switch {
	case canReplicate:
		add("role", CheckOK, "role %s has REPLICATION", role)
	case super:
		add("role", CheckOK, "role %s is a superuser (a LOGIN REPLICATION role without superuser is enough)", role)
	default:
		add("role", CheckFail, "role %s lacks REPLICATION: ALTER ROLE %s WITH REPLICATION", role, pgx.Identifier{role}.Sanitize())
	}

	pub := cfg.Source.Publication
	var pubExists, allTables bool
	err = conn.QueryRow(ctx, `SELECT count(*) > 0, coalesce(bool_or(puballtables), false) FROM pg_publication WHERE pubname = $1`, pub).Scan(&pubExists, &allTables)
	published := map[string]bool{}
	switch {
	case err != nil:
		add("publication", CheckFail, "cannot read publications: %v", err)
	case !pubExists && cfg.Source.ManagePublication && len(cfg.Source.PublicationTables) > 0:
		add("publication", CheckOK, "publication %s does not exist yet; start creates it (manage_publication) for %s", pub, words.Count(len(cfg.Source.PublicationTables), "table", "tables"))
		for _, t := range cfg.Source.PublicationTables {
			published[t.String()] = true
		}
	case !pubExists:
		add("publication", CheckFail, "publication %s does not exist: CREATE PUBLICATION %s FOR TABLE ...", pub, pgx.Identifier{pub}.Sanitize())
	default:
		rows, err := conn.Query(ctx, `SELECT schemaname || '.' || tablename FROM pg_publication_tables WHERE pubname = $1`, pub)
		if err == nil {
			names, cerr := pgx.CollectRows(rows, pgx.RowTo[string])
			err = cerr
			for _, n := range names {
				published[n] = true
			}
		}
		if err != nil {
			add("publication", CheckFail, "cannot read the tables of publication %s: %v", pub, err)
		} else if allTables {
			add("publication", CheckOK, "publication %s exists (FOR ALL TABLES)", pub)
		} else {
			add("publication", CheckOK, "publication %s exists with %s", pub, words.Count(len(published), "table", "tables"))
		}
	}

	slot, err := cdc.ReadSlot(ctx, conn, cfg.Source.Slot)
	switch {
	case err != nil:
		add("slot", CheckFail, "cannot read replication slots: %v", err)
	case !slot.Exists && cfg.Source.ManageSlot:
		add("slot", CheckOK, "slot %s does not exist yet; start creates it (manage_slot)", cfg.Source.Slot)
	case !slot.Exists:
		add("slot", CheckFail, "slot %s does not exist: SELECT pg_create_logical_replication_slot('%s', 'pgoutput'); or set source.manage_slot: true", cfg.Source.Slot, cfg.Source.Slot)
	case slot.Type != "logical" || slot.Plugin != "pgoutput":
		add("slot", CheckFail, "slot %s is a %s slot with plugin %q: the service needs a logical pgoutput slot", cfg.Source.Slot, slot.Type, slot.Plugin)
	case slot.Database != db:
		add("slot", CheckFail, "slot %s belongs to database %s, not %s", cfg.Source.Slot, slot.Database, db)
	case slot.WALStatus == "lost":
		add("slot", CheckFail, "slot %s was invalidated (wal_status lost): changes are missing; see docs/troubleshooting.md", cfg.Source.Slot)
	case slot.WALStatus == "unreserved" || slot.WALStatus == "extended":
		add("slot", CheckWarn, "slot %s has wal_status %s: it is close to being invalidated", cfg.Source.Slot, slot.WALStatus)
	case slot.Active:
		add("slot", CheckOK, "slot %s exists (pgoutput, wal_status %s), streamed now by pid %d", cfg.Source.Slot, slot.WALStatus, slot.ActivePID)
	default:
		add("slot", CheckOK, "slot %s exists (pgoutput, wal_status %s)", cfg.Source.Slot, slot.WALStatus)
	}

	for _, o := range cfg.Observers {
		if o.Wildcard || o.Entity == "" {
			continue
		}
		out = append(out, checkTable(ctx, conn, cfg, o, published, pubExists, templates))
	}
	out = append(out, checkState(ctx, conn, cfg, role)...)
	return out
}

// checkTable checks that an observer's table exists, is published so that its
// changes arrive under its name, and logs the old values its condition reads.
// published lists the tables of a publication start will create (pubExists false).
func checkTable(ctx context.Context, conn *pgx.Conn, cfg *configs.Config, o *configs.Observer, published map[string]bool, pubExists bool,
	templates func(*configs.Action) []sinks.TemplateSource) Check {
	t := o.Table.String()
	name := "table " + t
	var ident string
	var hasPK bool
	err := conn.QueryRow(ctx, `SELECT c.relreplident::text, EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary)
FROM pg_class c WHERE c.oid = to_regclass($1)`, pgx.Identifier{o.Table.Schema, o.Table.Table}.Sanitize()).Scan(&ident, &hasPK)
	if errors.Is(err, pgx.ErrNoRows) || (err == nil && ident == "") {
		return Check{name, CheckFail, fmt.Sprintf("observer %s watches %s, which does not exist", o.Name, t)}
	}
	if err != nil {
		return Check{name, CheckFail, fmt.Sprintf("cannot read table %s: %v", t, err)}
	}
	if pubExists {
		msg, err := cdc.ObservedTableProblem(ctx, conn, cfg.Source.Publication, t)
		if err != nil {
			return Check{name, CheckFail, err.Error()}
		}
		if msg != "" {
			return Check{name, CheckFail, fmt.Sprintf("observer %s: %s", o.Name, msg)}
		}
	} else if !published[t] {
		return Check{name, CheckFail, fmt.Sprintf("observer %s watches %s, which is not in publication %s: ALTER PUBLICATION %s ADD TABLE %s",
			o.Name, t, cfg.Source.Publication, pgx.Identifier{cfg.Source.Publication}.Sanitize(), pgx.Identifier{o.Table.Schema, o.Table.Table}.Sanitize())}
	}
	problems, err := ColumnProblems(ctx, conn, cfg.Source.Publication, o, templates)
	if err != nil {
		return Check{name, CheckFail, err.Error()}
	}
	if len(problems) > 0 {
		return Check{name, CheckFail, strings.Join(problems, "; ")}
	}
	changes := slices.Contains(o.Ops, decoder.OpUpdate) || slices.Contains(o.Ops, decoder.OpDelete)
	full := pgx.Identifier{o.Table.Schema, o.Table.Table}.Sanitize()
	switch {
	case changes && (ident == "n" || (ident == "d" && !hasPK)):
		return Check{name, CheckFail, fmt.Sprintf("%s has no usable replica identity: PostgreSQL rejects its UPDATEs and DELETEs while it is published; add a primary key or ALTER TABLE %s REPLICA IDENTITY FULL", t, full)}
	case o.Condition != "" && usesOld.MatchString(o.Condition) && ident != "f" && !cfg.Caching.Enabled:
		return Check{name, CheckWarn, fmt.Sprintf("observer %s's condition reads old values, but %s logs only its key for UPDATE/DELETE (REPLICA IDENTITY %s) and caching is off: ALTER TABLE %s REPLICA IDENTITY FULL, or enable caching", o.Name, t, identName(ident), full)}
	case o.Condition != "" && usesOld.MatchString(o.Condition) && ident != "f":
		return Check{name, CheckOK, fmt.Sprintf("%s is published; observer %s's condition reads old values, which come from the row cache for rows changed since start, not in a replay (REPLICA IDENTITY FULL would always send them)", t, o.Name)}
	}
	return Check{name, CheckOK, fmt.Sprintf("%s is published (REPLICA IDENTITY %s)", t, identName(ident))}
}

func identName(c string) string {
	switch c {
	case "f":
		return "FULL"
	case "n":
		return "NOTHING"
	case "i":
		return "USING INDEX"
	}
	return "DEFAULT"
}

// checkState checks the role's privileges on the service's own tables (or on the
// schema, to create them).
func checkState(ctx context.Context, conn *pgx.Conn, cfg *configs.Config, role string) []Check {
	schema := cfg.State.Schema
	tables := []string{registry.TableName}
	if cfg.Checkpoints.Enabled {
		tables = append(tables, checkpoint.Tables...)
	}
	if cfg.DLQ.Enabled {
		tables = append(tables, dlq.TableName)
	}
	if tc, err := TransportConfig(cfg); err == nil && tc.Type == transport.TypeNATS && cfg.Deduplication.Enabled {
		tables = append(tables, checkpoint.PartitionsTable) // the executors' settled positions
	}
	var out []Check
	var missing []string
	for _, t := range tables {
		q := pgx.Identifier{schema, t}.Sanitize()
		var exists, ok bool
		err := conn.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL,
       to_regclass($1) IS NOT NULL AND has_table_privilege(to_regclass($1), 'SELECT, INSERT, UPDATE, DELETE')`, q).Scan(&exists, &ok)
		switch {
		case err != nil:
			out = append(out, Check{"state " + t, CheckFail, fmt.Sprintf("cannot check %s: %v", q, err)})
		case !exists:
			missing = append(missing, t)
		case !ok:
			out = append(out, Check{"state " + t, CheckFail, fmt.Sprintf("role %s lacks SELECT, INSERT, UPDATE or DELETE on %s: GRANT SELECT, INSERT, UPDATE, DELETE ON %s TO %s", role, q, q, pgx.Identifier{role}.Sanitize())})
		default:
			out = append(out, Check{"state " + t, CheckOK, fmt.Sprintf("role %s may use %s", role, q)})
		}
	}
	if len(missing) > 0 {
		var schemaExists, canCreate bool
		err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1),
       CASE WHEN EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1) THEN has_schema_privilege($1, 'CREATE')
            ELSE has_database_privilege(current_database(), 'CREATE') END`, schema).Scan(&schemaExists, &canCreate)
		list := strings.Join(missing, ", ")
		switch {
		case err != nil:
			out = append(out, Check{"state schema", CheckFail, fmt.Sprintf("cannot check schema %s: %v", schema, err)})
		case canCreate:
			out = append(out, Check{"state schema", CheckOK, fmt.Sprintf("%s do not exist yet; role %s may create them in schema %s at start", list, role, schema)})
		default:
			out = append(out, Check{"state schema", CheckFail, fmt.Sprintf("%s do not exist and role %s may not create them in schema %s: create them as an administrator (see docs/deployment.md) or GRANT CREATE", list, role, schema)})
		}
	}
	return out
}
