package snapshot

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fraiseql/fraiseql-observers/checkpoint"
	"github.com/fraiseql/fraiseql-observers/internal/pgschema"
	"github.com/fraiseql/fraiseql-observers/lsn"
)

// States of a snapshot.
const (
	StatePending   = "pending"   // requested, waiting for the snapshot before it
	StateRunning   = "running"   // reading chunks
	StateDone      = "done"      // every chunk read and settled
	StateCancelled = "cancelled" // stopped by snapshot cancel
	StateFailed    = "failed"    // stopped by an error an operator must fix (see Error)
)

// Origins of a snapshot.
const (
	OriginInitial = "initial" // snapshot.mode initial, when the slot was created
	OriginCommand = "command" // the snapshot command (POST /snapshots)
)

// Tables are the state tables of snapshots, in the state schema next to the
// checkpoints; a FOR ALL TABLES publication must not hand their changes on.
var Tables = []string{"observer_snapshots", "observer_snapshot_chunks"}

// Info describes one snapshot for the status documents and the snapshot command.
type Info struct {
	ID       int64  `json:"id"`
	Table    string `json:"table"`
	Where    string `json:"where,omitempty"`
	Observer string `json:"observer,omitempty"`
	Origin   string `json:"origin"`
	State    string `json:"state"`
	// ChunkSize is the number of rows read per chunk.
	ChunkSize int `json:"chunk_size"`
	// Chunks, RowsRead and RowsSent count the completed chunks (every event settled):
	// rows read from the table, and READ events handed on (rows the stream changed
	// while a chunk was read are left to the stream's events).
	Chunks   int64 `json:"chunks"`
	RowsRead int64 `json:"rows_read"`
	RowsSent int64 `json:"rows_sent"`
	// RowsEstimate is the planner's estimate of the rows to read, taken at the start.
	RowsEstimate int64 `json:"rows_estimate"`
	// RowsPerSecond and ETASeconds are known while the snapshot runs in the service.
	RowsPerSecond float64    `json:"rows_per_second"`
	ETASeconds    *float64   `json:"eta_seconds"`
	Error         string     `json:"error,omitempty"`
	CreatedAt     time.Time  `json:"created_at"`
	StartedAt     *time.Time `json:"started_at"`
	FinishedAt    *time.Time `json:"finished_at"`

	schema, name string
	lastKey      []string // text of the key of the last row of the last completed chunk
	// chunkBytes ends a chunk early once its events hold that many bytes: -1 for no
	// bound, 0 when not recorded yet (a snapshot requested by an earlier version). Like
	// ChunkSize it is fixed when the snapshot is requested, so that a chunk read again
	// after a restart has the same rows, hence the same ids, whatever the configuration
	// says then. It is not among infoColumns: status reads snapshots from tables an
	// earlier version may have created.
	chunkBytes int64
}

// finished reports whether the snapshot has ended.
func (i *Info) finished() bool {
	return i.State == StateDone || i.State == StateCancelled || i.State == StateFailed
}

// progress is where a snapshot stands: the chunks completed and the key after which
// the next chunk starts.
type progress struct {
	chunks, rowsRead, rowsSent int64
	lastKey                    []string // nil: from the first row
}

// store keeps snapshots and their progress durably, fenced like the checkpoints: a
// write succeeds only while no process with a newer epoch owns the slot.
type store struct {
	pool     *pgxpool.Pool
	schema   string
	slot     string
	listener string
	epoch    func() int64 // nil: read only
}

func (s *store) table(name string) string { return pgx.Identifier{s.schema, name}.Sanitize() }

// fence is the condition every write carries ($1 is the slot, $2 our epoch).
func (s *store) fence() string {
	return fmt.Sprintf(`coalesce((SELECT epoch FROM %s WHERE slot_name = $1), 0) <= $2`, s.table("observer_epochs"))
}

// migrate creates the tables when they do not exist.
func (s *store) migrate(ctx context.Context) error {
	sql := fmt.Sprintf(`
CREATE TABLE IF NOT EXISTS %[1]s (
	id            bigserial   PRIMARY KEY,
	slot_name     text        NOT NULL,
	schema_name   text        NOT NULL,
	table_name    text        NOT NULL,
	where_sql     text        NOT NULL DEFAULT '',
	observer      text        NOT NULL DEFAULT '',
	origin        text        NOT NULL,
	state         text        NOT NULL,
	chunk_size    integer     NOT NULL,
	chunk_bytes   bigint      NOT NULL DEFAULT 0,
	last_key      text[],
	chunks        bigint      NOT NULL DEFAULT 0,
	rows_read     bigint      NOT NULL DEFAULT 0,
	rows_sent     bigint      NOT NULL DEFAULT 0,
	rows_estimate bigint      NOT NULL DEFAULT 0,
	error         text        NOT NULL DEFAULT '',
	listener_id   text        NOT NULL DEFAULT '',
	created_at    timestamptz NOT NULL DEFAULT now(),
	started_at    timestamptz,
	finished_at   timestamptz,
	updated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX IF NOT EXISTS observer_snapshots_one_per_table ON %[1]s (slot_name, schema_name, table_name)
	WHERE state IN ('pending', 'running');
COMMENT ON TABLE %[1]s IS 'fraiseql-observers snapshots (backfills): progress is the key of the last row of the last completed chunk';
CREATE TABLE IF NOT EXISTS %[2]s (
	snapshot_id bigint NOT NULL REFERENCES %[1]s (id) ON DELETE CASCADE,
	chunk       bigint NOT NULL,
	base        pg_lsn NOT NULL,
	fingerprint bytea  NOT NULL,
	PRIMARY KEY (snapshot_id, chunk)
);
COMMENT ON TABLE %[2]s IS 'fraiseql-observers snapshot chunks read but not yet completed: the base of their event ids and a hash of their keys';`,
		s.table("observer_snapshots"), s.table("observer_snapshot_chunks"))
	if err := pgschema.Ensure(ctx, s.pool, s.schema, Tables, sql); err != nil {
		return fmt.Errorf("create snapshot tables: %w", err)
	}
	// Tables created by an earlier version lack the byte bound (0 on their rows).
	return pgschema.AddColumn(ctx, s.pool, s.table("observer_snapshots"), "chunk_bytes", "bigint NOT NULL DEFAULT 0")
}

const infoColumns = `id, schema_name, table_name, where_sql, observer, origin, state, chunk_size, last_key, chunks, rows_read, rows_sent,
	rows_estimate, error, created_at, started_at, finished_at`

func scanInfo(row pgx.Row) (Info, error) {
	var i Info
	err := row.Scan(&i.ID, &i.schema, &i.name, &i.Where, &i.Observer, &i.Origin, &i.State, &i.ChunkSize, &i.lastKey, &i.Chunks,
		&i.RowsRead, &i.RowsSent, &i.RowsEstimate, &i.Error, &i.CreatedAt, &i.StartedAt, &i.FinishedAt)
	i.Table = i.schema + "." + i.name
	return i, err
}

// create records a new pending snapshot. A pending or running snapshot of the same
// table is a *ConflictError.
func (s *store) create(ctx context.Context, i Info) (Info, error) {
	row := s.pool.QueryRow(ctx, fmt.Sprintf(`
INSERT INTO %s (slot_name, schema_name, table_name, where_sql, observer, origin, state, chunk_size, chunk_bytes, rows_estimate, listener_id)
SELECT $1, $3, $4, $5, $6, $7, 'pending', $8, $9, $10, $11 WHERE %s
RETURNING `+infoColumns, s.table("observer_snapshots"), s.fence()),
		s.slot, s.epoch(), i.schema, i.name, i.Where, i.Observer, i.Origin, i.ChunkSize, i.chunkBytes, i.RowsEstimate, s.listener)
	out, err := scanInfo(row)
	var pgErr *pgconn.PgError
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return Info{}, fmt.Errorf("record snapshot of %s: %w", i.Table, checkpoint.ErrFenced)
	case errors.As(err, &pgErr) && pgErr.Code == "23505": // unique_violation: one per table
		var id int64
		_ = s.pool.QueryRow(ctx, fmt.Sprintf(`SELECT id FROM %s WHERE slot_name = $1 AND schema_name = $2 AND table_name = $3 AND state IN ('pending', 'running')`,
			s.table("observer_snapshots")), s.slot, i.schema, i.name).Scan(&id)
		return Info{}, &ConflictError{ID: id, Table: i.Table}
	case err != nil:
		return Info{}, fmt.Errorf("record snapshot of %s: %w", i.Table, err)
	}
	return out, nil
}

// hadInitial reports whether the slot has an initial snapshot, in any state.
func (s *store) hadInitial(ctx context.Context) (bool, error) {
	var had bool
	err := s.pool.QueryRow(ctx, fmt.Sprintf(`SELECT EXISTS (SELECT 1 FROM %s WHERE slot_name = $1 AND origin = 'initial')`,
		s.table("observer_snapshots")), s.slot).Scan(&had)
	if err != nil {
		return false, fmt.Errorf("read snapshots: %w", err)
	}
	return had, nil
}

// list returns the slot's snapshots, newest first (at most limit).
func (s *store) list(ctx context.Context, limit int) ([]Info, error) {
	rows, err := s.pool.Query(ctx, fmt.Sprintf(`SELECT `+infoColumns+` FROM %s WHERE slot_name = $1 ORDER BY id DESC LIMIT $2`,
		s.table("observer_snapshots")), s.slot, limit)
	if err != nil {
		return nil, fmt.Errorf("list snapshots: %w", err)
	}
	defer rows.Close()
	var out []Info
	for rows.Next() {
		i, err := scanInfo(rows)
		if err != nil {
			return nil, fmt.Errorf("list snapshots: %w", err)
		}
		out = append(out, i)
	}
	return out, rows.Err()
}

// get returns one snapshot of the slot, or ErrNotFound.
func (s *store) get(ctx context.Context, id int64) (Info, error) {
	i, err := scanInfo(s.pool.QueryRow(ctx, fmt.Sprintf(`SELECT `+infoColumns+` FROM %s WHERE slot_name = $1 AND id = $2`,
		s.table("observer_snapshots")), s.slot, id))
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return Info{}, ErrNotFound
	case err != nil:
		return Info{}, fmt.Errorf("read snapshot %d: %w", id, err)
	}
	return i, nil
}

// Unfinished reads the pending and running snapshots of slot from the state tables in
// schema (none when the tables do not exist), oldest first: what status shows when
// the service does not answer.
func Unfinished(ctx context.Context, pool *pgxpool.Pool, schema, slot string) ([]Info, error) {
	var ok bool
	if err := pool.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", pgx.Identifier{schema, "observer_snapshots"}.Sanitize()).Scan(&ok); err != nil {
		return nil, fmt.Errorf("read snapshots: %w", err)
	}
	if !ok {
		return nil, nil
	}
	return (&store{pool: pool, schema: schema, slot: slot}).unfinished(ctx)
}

// unfinished returns the pending and running snapshots, oldest first.
func (s *store) unfinished(ctx context.Context) ([]Info, error) {
	rows, err := s.pool.Query(ctx, fmt.Sprintf(`SELECT `+infoColumns+` FROM %s WHERE slot_name = $1 AND state IN ('pending', 'running') ORDER BY id`,
		s.table("observer_snapshots")), s.slot)
	if err != nil {
		return nil, fmt.Errorf("read unfinished snapshots: %w", err)
	}
	defer rows.Close()
	var out []Info
	for rows.Next() {
		i, err := scanInfo(rows)
		if err != nil {
			return nil, fmt.Errorf("read unfinished snapshots: %w", err)
		}
		out = append(out, i)
	}
	return out, rows.Err()
}

// exec runs one fenced write (args from $3 on) that must change a row.
func (s *store) exec(ctx context.Context, what, sql string, args ...any) error {
	tag, err := s.pool.Exec(ctx, sql, append([]any{s.slot, s.epoch()}, args...)...)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("%s: %w", what, checkpoint.ErrFenced)
	}
	return nil
}

// start marks a pending or running snapshot running, records its estimate and, when
// the snapshot has none yet, the byte bound chunkBytes; it returns the snapshot's
// byte bound. It reports false when the snapshot has ended meanwhile (cancelled).
func (s *store) start(ctx context.Context, id, estimate, chunkBytes int64) (int64, bool, error) {
	var bound int64
	err := s.pool.QueryRow(ctx, fmt.Sprintf(`
UPDATE %s SET state = 'running', started_at = coalesce(started_at, now()), rows_estimate = $4, listener_id = $5,
       chunk_bytes = CASE WHEN chunk_bytes = 0 THEN $6 ELSE chunk_bytes END, updated_at = now()
WHERE id = $3 AND slot_name = $1 AND state IN ('pending', 'running') AND %s
RETURNING chunk_bytes`, s.table("observer_snapshots"), s.fence()),
		s.slot, s.epoch(), id, estimate, s.listener, chunkBytes).Scan(&bound)
	switch {
	case err == nil:
		return bound, true, nil
	case !errors.Is(err, pgx.ErrNoRows):
		return 0, false, fmt.Errorf("start snapshot: %w", err)
	}
	i, err := s.get(ctx, id)
	if err == nil && i.finished() {
		return 0, false, nil
	}
	return 0, false, fmt.Errorf("start snapshot: %w", checkpoint.ErrFenced)
}

// finish ends a snapshot (done, cancelled or failed) and forgets its chunks. A
// snapshot that already ended keeps its state.
func (s *store) finish(ctx context.Context, id int64, state, reason string) error {
	return s.exec(ctx, "finish snapshot", fmt.Sprintf(`
WITH gone AS (DELETE FROM %[1]s WHERE snapshot_id = $3 AND %[3]s)
UPDATE %[2]s SET state = CASE WHEN state IN ('pending', 'running') THEN $4 ELSE state END,
       error = CASE WHEN state IN ('pending', 'running') THEN $5 ELSE error END,
       finished_at = coalesce(finished_at, now()), updated_at = now()
WHERE id = $3 AND slot_name = $1 AND %[3]s`, s.table("observer_snapshot_chunks"), s.table("observer_snapshots"), s.fence()), id, state, reason)
}

// saveProgress records the completed chunks.
func (s *store) saveProgress(ctx context.Context, id int64, p progress) error {
	return s.exec(ctx, "save snapshot progress", fmt.Sprintf(`
WITH gone AS (DELETE FROM %[1]s WHERE snapshot_id = $3 AND chunk <= $5 AND %[3]s)
UPDATE %[2]s SET last_key = $4, chunks = $5, rows_read = $6, rows_sent = $7, updated_at = now()
WHERE id = $3 AND slot_name = $1 AND %[3]s`, s.table("observer_snapshot_chunks"), s.table("observer_snapshots"), s.fence()),
		id, p.lastKey, p.chunks, p.rowsRead, p.rowsSent)
}

// chunkBase returns the base of the ids of chunk no of snapshot id: the one recorded
// when it was first read, if its rows have the same keys now (fingerprint), else
// fresh, which is then recorded. The record is durable before the chunk's events
// are handed on, so a chunk read again after a crash gives its rows the same ids.
func (s *store) chunkBase(ctx context.Context, id, no int64, fingerprint []byte, fresh lsn.LSN) (lsn.LSN, error) {
	var base string
	var fp []byte
	err := s.pool.QueryRow(ctx, fmt.Sprintf(`SELECT base::text, fingerprint FROM %s WHERE snapshot_id = $1 AND chunk = $2`,
		s.table("observer_snapshot_chunks")), id, no).Scan(&base, &fp)
	switch {
	case err == nil && bytes.Equal(fp, fingerprint):
		return lsn.Parse(base)
	case err != nil && !errors.Is(err, pgx.ErrNoRows):
		return 0, fmt.Errorf("read snapshot chunk %d/%d: %w", id, no, err)
	}
	err = s.exec(ctx, "record snapshot chunk", fmt.Sprintf(`
INSERT INTO %s (snapshot_id, chunk, base, fingerprint) SELECT $3, $4, $5::text::pg_lsn, $6 WHERE %s
ON CONFLICT (snapshot_id, chunk) DO UPDATE SET base = EXCLUDED.base, fingerprint = EXCLUDED.fingerprint`,
		s.table("observer_snapshot_chunks"), s.fence()), id, no, fresh.String(), fingerprint)
	if err != nil {
		return 0, err
	}
	return fresh, nil
}
