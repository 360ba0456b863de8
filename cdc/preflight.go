package cdc

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/fraiseql/fraiseql-observers/lsn"
)

// SlotInfo is the state of the replication slot as pg_replication_slots shows it.
type SlotInfo struct {
	Name              string
	Exists            bool
	Plugin            string
	Type              string
	Database          string
	Active            bool
	ActivePID         int32
	RestartLSN        lsn.LSN
	ConfirmedFlushLSN lsn.LSN
	WALStatus         string // reserved | extended | unreserved | lost
	SafeWALSize       *int64 // nil when max_slot_wal_keep_size is -1
}

// TableIdentity describes a published table and whether PostgreSQL can log its old rows.
type TableIdentity struct {
	Schema, Table   string
	ReplicaIdentity byte // 'd' default, 'n' nothing, 'f' full, 'i' index
	HasPrimaryKey   bool
	HasIdentityIdx  bool
}

// Usable reports whether UPDATE and DELETE on the table can be replicated at all.
func (t TableIdentity) Usable() bool {
	switch t.ReplicaIdentity {
	case 'f':
		return true
	case 'd':
		return t.HasPrimaryKey
	case 'i':
		return t.HasIdentityIdx
	}
	return false
}

// Warning is a problem preflight found that does not stop the service.
type Warning struct {
	Check string
	Msg   string
}

// PreflightResult is what preflight learnt about the server.
type PreflightResult struct {
	Slot     SlotInfo
	Tables   []TableIdentity
	Warnings []Warning
}

// Preflight checks that streaming can start: wal_level, the role's REPLICATION
// attribute, the publication and the slot (creating them when the options say to
// manage them). It returns a *PreflightError or *GapError for problems an operator must
// fix. checkpoint is our durable position (0 when there is none). Its queries run on
// Options.DB; creating the slot takes a replication connection of its own.
func (s *Session) Preflight(ctx context.Context, checkpoint lsn.LSN) (*PreflightResult, error) {
	conn := s.opts.DB
	if err := CheckServer(ctx, conn); err != nil {
		return nil, err
	}
	res := &PreflightResult{}
	if err := s.checkPublication(ctx, conn, res); err != nil {
		return nil, err
	}
	slot, err := ReadSlot(ctx, conn, s.opts.Slot)
	if err != nil {
		return nil, fmt.Errorf("preflight: read slot: %w", err)
	}
	if !slot.Exists {
		if checkpoint != 0 {
			return nil, &GapError{Slot: s.opts.Slot, Reason: fmt.Sprintf("the slot no longer exists but our checkpoint is at %s; "+
				"changes after it are gone. Recreating the slot would skip them silently: decide how to recover (resync, or reset the checkpoint) before starting again", checkpoint)}
		}
		if !s.opts.ManageSlot {
			return nil, &PreflightError{Check: "slot", Msg: fmt.Sprintf("replication slot %q does not exist", s.opts.Slot),
				Hint: fmt.Sprintf("SELECT pg_create_logical_replication_slot('%s', 'pgoutput'); or set source.manage_slot: true", s.opts.Slot)}
		}
		if err := s.createSlot(ctx); err != nil {
			return nil, err
		}
		if slot, err = ReadSlot(ctx, conn, s.opts.Slot); err != nil {
			return nil, fmt.Errorf("preflight: read created slot: %w", err)
		}
		s.log.Info().Str("slot", s.opts.Slot).Str("consistent_point", slot.ConfirmedFlushLSN.String()).Msg("created replication slot")
	}
	var db string
	if err := conn.QueryRow(ctx, "SELECT current_database()").Scan(&db); err != nil {
		return nil, fmt.Errorf("preflight: read database: %w", err)
	}
	switch {
	case slot.Type != "logical":
		return nil, &PreflightError{Check: "slot", Msg: fmt.Sprintf("slot %q is a %s slot, not a logical one", s.opts.Slot, slot.Type)}
	case slot.Plugin != "pgoutput":
		return nil, &PreflightError{Check: "slot", Msg: fmt.Sprintf("slot %q uses output plugin %q, not pgoutput", s.opts.Slot, slot.Plugin),
			Hint: "create a separate slot with the pgoutput plugin for this service"}
	case slot.Database != db:
		return nil, &PreflightError{Check: "slot", Msg: fmt.Sprintf("slot %q belongs to database %q, not %q", s.opts.Slot, slot.Database, db)}
	case slot.WALStatus == "lost":
		return nil, &GapError{Slot: s.opts.Slot, Reason: "the slot was invalidated (wal_status = lost): " + lostAdvice}
	case slot.Active:
		return nil, &PreflightError{Check: "slot", Msg: fmt.Sprintf("replication slot %q is active for PID %d (another consumer is reading it)", s.opts.Slot, slot.ActivePID),
			Err: &slotActive{pid: slot.ActivePID}, Hint: "stop the other consumer; only one reader per slot is possible"}
	}
	if checkpoint != 0 && slot.ConfirmedFlushLSN > checkpoint {
		return nil, &GapError{Slot: s.opts.Slot, Reason: fmt.Sprintf("the slot's confirmed_flush_lsn %s is ahead of our checkpoint %s: "+
			"someone else advanced the slot, and the changes in between may never have reached our actions", slot.ConfirmedFlushLSN, checkpoint)}
	}
	res.Slot = slot
	return res, nil
}

func (s *Session) checkPublication(ctx context.Context, conn DB, res *PreflightResult) error {
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = $1)", s.opts.Publication).Scan(&exists); err != nil {
		return fmt.Errorf("preflight: read publications: %w", err)
	}
	if !exists {
		if !s.opts.ManagePublication || len(s.opts.PublicationTables) == 0 {
			hint := fmt.Sprintf("CREATE PUBLICATION %s FOR TABLE ...; or set source.manage_publication: true with source.publication_tables",
				pgx.Identifier{s.opts.Publication}.Sanitize())
			return &PreflightError{Check: "publication", Msg: fmt.Sprintf("publication %q does not exist", s.opts.Publication), Hint: hint}
		}
		tables := make([]string, len(s.opts.PublicationTables))
		for i, t := range s.opts.PublicationTables {
			tables[i] = quoteQualified(t)
		}
		// Via the root, changes of a partitioned table arrive under its own name, the
		// one observers are written for, rather than under each partition's.
		sql := fmt.Sprintf("CREATE PUBLICATION %s FOR TABLE %s WITH (publish_via_partition_root = true)",
			pgx.Identifier{s.opts.Publication}.Sanitize(), strings.Join(tables, ", "))
		if _, err := conn.Exec(ctx, sql); err != nil {
			return &PreflightError{Check: "publication", Msg: fmt.Sprintf("cannot create publication %q", s.opts.Publication), Err: err,
				Hint: "the role must own the tables (or be superuser)"}
		}
		s.log.Info().Str("publication", s.opts.Publication).Strs("tables", s.opts.PublicationTables).Msg("created publication")
	}
	rows, err := conn.Query(ctx, `
SELECT pt.schemaname, pt.tablename, c.relreplident::text,
       EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary),
       EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisreplident)
FROM pg_publication_tables pt
JOIN pg_namespace n ON n.nspname = pt.schemaname
JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = pt.tablename
WHERE pt.pubname = $1
ORDER BY 1, 2`, s.opts.Publication)
	if err != nil {
		return fmt.Errorf("preflight: read published tables: %w", err)
	}
	for rows.Next() {
		var t TableIdentity
		var ri string
		if err := rows.Scan(&t.Schema, &t.Table, &ri, &t.HasPrimaryKey, &t.HasIdentityIdx); err != nil {
			return fmt.Errorf("preflight: read published tables: %w", err)
		}
		if ri != "" {
			t.ReplicaIdentity = ri[0]
		}
		res.Tables = append(res.Tables, t)
		if !t.Usable() {
			w := Warning{Check: "replica_identity", Msg: fmt.Sprintf("table %s.%s has no usable replica identity (%s): PostgreSQL rejects its UPDATEs and DELETEs while it is published; "+
				"add a primary key or ALTER TABLE ... REPLICA IDENTITY FULL", t.Schema, t.Table, describeIdentity(t))}
			res.Warnings = append(res.Warnings, w)
			s.log.Warn().Str("check", w.Check).Str("table", t.Schema+"."+t.Table).Msg(w.Msg)
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("preflight: read published tables: %w", err)
	}
	for _, t := range s.opts.ObservedTables {
		msg, err := ObservedTableProblem(ctx, conn, s.opts.Publication, t)
		if err != nil {
			return err
		}
		if msg != "" {
			w := Warning{Check: "observed_table", Msg: msg}
			res.Warnings = append(res.Warnings, w)
			s.log.Warn().Str("check", w.Check).Str("table", t).Msg(w.Msg)
		}
	}
	return nil
}

// ObservedTableProblem explains why changes of table (schema.table) cannot reach
// the observers watching it through publication pub, which must exist, or returns "".
func ObservedTableProblem(ctx context.Context, conn Querier, pub, table string) (string, error) {
	schema, name, _ := strings.Cut(table, ".")
	var kind, root string
	var published, viaRoot, partitionsPublished, rootPublished bool
	// Names are joined to pg_class rather than passed to to_regclass, which would
	// need USAGE on every schema the planner lets it see (pg_toast among them).
	err := conn.QueryRow(ctx, `
WITH t AS (SELECT c.oid, c.relkind, pg_partition_root(c.oid) AS root
           FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
           WHERE n.nspname = $2 AND c.relname = $3 AND c.relkind IN ('r', 'p')),
     pub AS (SELECT c.oid FROM pg_publication_tables pt
             JOIN pg_namespace n ON n.nspname = pt.schemaname
             JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = pt.tablename
             WHERE pt.pubname = $1)
SELECT t.relkind::text,
       coalesce((SELECT n.nspname || '.' || r.relname FROM pg_class r JOIN pg_namespace n ON n.oid = r.relnamespace WHERE r.oid = t.root), ''),
       t.oid IN (SELECT oid FROM pub),
       p.pubviaroot,
       EXISTS (SELECT 1 FROM pg_partition_tree(t.oid) tree WHERE tree.isleaf AND tree.relid IN (SELECT oid FROM pub)),
       coalesce(t.root IN (SELECT oid FROM pub), false)
FROM pg_publication p, t
WHERE p.pubname = $1`, pub, schema, name).
		Scan(&kind, &root, &published, &viaRoot, &partitionsPublished, &rootPublished)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return fmt.Sprintf("table %s does not exist: observers of it never fire until it is created and published", table), nil
	case err != nil:
		return "", fmt.Errorf("preflight: read observed table %s: %w", table, err)
	case published:
		return "", nil
	case kind == "r" && viaRoot && rootPublished && root != "":
		return fmt.Sprintf("%s is a partition of %s, and publication %s sends its changes under %s's name: observers of %s never fire; watch %s instead",
			table, root, pub, root, table, root), nil
	case kind == "p" && partitionsPublished && !viaRoot:
		return fmt.Sprintf("%s is partitioned, and publication %s sends its changes under each partition's name: observers of %s never fire; "+
			"ALTER PUBLICATION %s SET (publish_via_partition_root = true)", table, pub, table, pgx.Identifier{pub}.Sanitize()), nil
	}
	return fmt.Sprintf("%s is not in publication %s: observers of it never fire; ALTER PUBLICATION %s ADD TABLE %s",
		table, pub, pgx.Identifier{pub}.Sanitize(), quoteQualified(table)), nil
}

func describeIdentity(t TableIdentity) string {
	switch t.ReplicaIdentity {
	case 'n':
		return "REPLICA IDENTITY NOTHING"
	case 'd':
		return "REPLICA IDENTITY DEFAULT without a primary key"
	case 'i':
		return "REPLICA IDENTITY USING INDEX with the index gone"
	}
	return "unknown"
}

// quoteQualified quotes "schema.table" or "table" as SQL identifiers.
func quoteQualified(name string) string {
	if schema, table, ok := strings.Cut(name, "."); ok {
		return pgx.Identifier{schema, table}.Sanitize()
	}
	return pgx.Identifier{name}.Sanitize()
}

// createSlot creates the logical slot over a replication connection of its own, dialled
// from ConnConfig as the stream's: the slot is created by the identity that streams
// it, whatever role Options.DB connects as.
func (s *Session) createSlot(ctx context.Context) error {
	conn, err := pgconn.ConnectConfig(ctx, s.replConfig())
	if err != nil {
		return &PreflightError{Check: "slot", Msg: "cannot open a replication connection to create the slot", Err: err}
	}
	defer conn.Close(context.WithoutCancel(ctx))
	sql := fmt.Sprintf("CREATE_REPLICATION_SLOT %s LOGICAL pgoutput NOEXPORT_SNAPSHOT", pgx.Identifier{s.opts.Slot}.Sanitize())
	if _, err := conn.Exec(ctx, sql).ReadAll(); err != nil {
		return &PreflightError{Check: "slot", Msg: fmt.Sprintf("cannot create replication slot %q", s.opts.Slot), Err: err}
	}
	return nil
}

// ReadSlot returns the slot's row of pg_replication_slots (Exists false if none).
func ReadSlot(ctx context.Context, q Querier, name string) (SlotInfo, error) {
	info := SlotInfo{Name: name}
	var plugin, database, walStatus *string
	var restart, confirmed *string
	err := q.QueryRow(ctx, `
SELECT plugin, slot_type, database, active, coalesce(active_pid, 0), restart_lsn::text, confirmed_flush_lsn::text, wal_status, safe_wal_size
FROM pg_replication_slots WHERE slot_name = $1`, name).Scan(
		&plugin, &info.Type, &database, &info.Active, &info.ActivePID, &restart, &confirmed, &walStatus, &info.SafeWALSize)
	if errors.Is(err, pgx.ErrNoRows) {
		return info, nil
	}
	if err != nil {
		return info, err
	}
	info.Exists = true
	info.Plugin, info.Database, info.WALStatus = deref(plugin), deref(database), deref(walStatus)
	if restart != nil {
		info.RestartLSN, _ = lsn.Parse(*restart)
	}
	if confirmed != nil {
		info.ConfirmedFlushLSN, _ = lsn.Parse(*confirmed)
	}
	return info, nil
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// CheckServer runs the checks that need neither the slot nor our checkpoint —
// wal_level and the role's REPLICATION attribute — on db, so that a server that cannot
// stream is reported before the service touches its own tables. A server that cannot
// be reached (a *pgconn.ConnectError) is a *PreflightError too.
func CheckServer(ctx context.Context, db Querier) error {
	var walLevel string
	if err := db.QueryRow(ctx, "SHOW wal_level").Scan(&walLevel); err != nil {
		var ce *pgconn.ConnectError
		if errors.As(err, &ce) {
			return &PreflightError{Check: "connect", Msg: "cannot connect to the source database", Err: err,
				Hint: "check source.dsn (host, port, user, database) and pg_hba.conf"}
		}
		return fmt.Errorf("preflight: read wal_level: %w", err)
	}
	if walLevel != "logical" {
		return &PreflightError{Check: "wal_level", Msg: fmt.Sprintf("wal_level is %q, logical replication needs \"logical\"", walLevel),
			Hint: "ALTER SYSTEM SET wal_level = logical; then restart PostgreSQL"}
	}
	var canReplicate bool
	var role string
	if err := db.QueryRow(ctx, "SELECT current_user, rolreplication OR rolsuper FROM pg_roles WHERE rolname = current_user").Scan(&role, &canReplicate); err != nil {
		return fmt.Errorf("preflight: read role attributes: %w", err)
	}
	if !canReplicate {
		return &PreflightError{Check: "role", Msg: fmt.Sprintf("role %q lacks the REPLICATION attribute", role),
			Hint: fmt.Sprintf("ALTER ROLE %s WITH REPLICATION", pgx.Identifier{role}.Sanitize())}
	}
	return nil
}

// lostAdvice explains an invalidated slot to the operator.
const lostAdvice = "PostgreSQL removed WAL it still needed, so changes are missing; " +
	"raise max_slot_wal_keep_size and decide how to recover before creating a new slot (docs/troubleshooting.md, gap errors)"
