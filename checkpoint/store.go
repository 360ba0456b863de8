// Package checkpoint stores the service's progress durably in PostgreSQL, in
// observer_checkpoints: one row per action (the position up to which the action settled
// every event it had to handle) and one row with action '*' for the slot (the position
// up to which every action settled everything; the session never confirms past it).
//
// Writes are fenced: each process takes a new epoch for the slot at start, and a row is
// only ever updated by a writer with an epoch at least as high, to a position at least as
// high. A stale process can never move a checkpoint backwards.
package checkpoint

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fraiseql/fraiseql-observers/internal/pgschema"
	"github.com/fraiseql/fraiseql-observers/lsn"
)

// SlotAction is the action name of the slot-wide row.
const SlotAction = "*"

// CheckpointsTable and EpochsTable are the tables of checkpoints and of the slot's
// fencing epochs (and lease), in the state schema; Tables lists both.
const (
	CheckpointsTable = "observer_checkpoints"
	EpochsTable      = "observer_epochs"
)

// Tables are the state tables of this package.
var Tables = []string{CheckpointsTable, EpochsTable}

// ErrFenced is returned by Save when a newer process has taken over the slot.
var ErrFenced = errors.New("checkpoint fenced: another process with a newer epoch owns this slot")

// lockTimeout bounds how long a checkpoint write or a lease renewal waits for a lock
// (an operator's LOCK of the table, a long transaction): the write fails and is
// retried instead of piling up behind the lock.
const lockTimeout = "2s"

// State is a set of checkpoints of one slot.
type State struct {
	// Slot is the slot-wide position (a transaction end LSN); 0 when none is stored.
	Slot lsn.LSN
	// Actions maps action ids to their positions.
	Actions map[string]lsn.Position
	// SystemID is the server's system identifier recorded with the slot row.
	SystemID string
	// DisabledAt is when an instance started streaming the slot with checkpoints
	// disabled (MarkDisabled), nil when it never did since the last write. It then
	// confirmed what it delivered without writing checkpoints, so the slot's position
	// has moved past these and supersedes them.
	DisabledAt *time.Time
	// DisabledBy is the listener id of that instance.
	DisabledBy string
}

// Store reads and writes the checkpoints of one slot. It is safe for concurrent use.
type Store struct {
	pool     *pgxpool.Pool
	schema   string
	slot     string
	listener string
	epoch    int64
	leaseTo  atomic.Int64 // unix nanos: our lease's expiry as of the last renewal (local clock)
}

// NewStore returns a Store for the slot, with tables in the given schema.
func NewStore(pool *pgxpool.Pool, schema, slot, listener string) *Store {
	if schema == "" {
		schema = "public"
	}
	return &Store{pool: pool, schema: schema, slot: slot, listener: listener}
}

func (s *Store) table(name string) string { return pgx.Identifier{s.schema, name}.Sanitize() }

// Migrate creates the tables when they do not exist.
func (s *Store) Migrate(ctx context.Context) error {
	sql := fmt.Sprintf(`
CREATE TABLE IF NOT EXISTS %[1]s (
	slot_name   text        NOT NULL,
	action      text        NOT NULL,
	commit_lsn  pg_lsn      NOT NULL,
	ordinal     bigint      NOT NULL DEFAULT 0,
	system_id   text        NOT NULL DEFAULT '',
	epoch       bigint      NOT NULL DEFAULT 0,
	listener_id text        NOT NULL DEFAULT '',
	created_at  timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (slot_name, action)
);
COMMENT ON TABLE %[1]s IS 'fraiseql-observers progress: per action and slot-wide (action = ''*''); created_at is the time of the last write';
CREATE TABLE IF NOT EXISTS %[2]s (
	slot_name   text        PRIMARY KEY,
	epoch       bigint      NOT NULL,
	listener_id text        NOT NULL,
	acquired_at timestamptz NOT NULL DEFAULT now(),
	expires_at  timestamptz
);`, s.table("observer_checkpoints"), s.table("observer_epochs"))
	if err := pgschema.Ensure(ctx, s.pool, s.schema, Tables, sql); err != nil {
		return fmt.Errorf("create checkpoint tables: %w", err)
	}
	// Tables created by an earlier version lack the lease column and the marker of a
	// time without checkpoints.
	if err := pgschema.AddColumn(ctx, s.pool, s.table("observer_epochs"), "expires_at", "timestamptz"); err != nil {
		return err
	}
	return pgschema.AddColumn(ctx, s.pool, s.table("observer_checkpoints"), "disabled_at", "timestamptz")
}

// MarkDisabled records, when the slot has checkpoints stored, that this listener
// streams it with checkpoints disabled: it confirms what it delivered without writing
// them, so they fall behind the slot. A later start with checkpoints enabled sees the
// mark (State.DisabledAt) and resumes from the slot instead of reporting the slot
// ahead of the checkpoint as a gap; its first write clears the mark. It also takes a
// new epoch, fencing a writer of an earlier run. Without the tables it does nothing.
func MarkDisabled(ctx context.Context, pool *pgxpool.Pool, schema, slot, listener string) error {
	s := NewStore(pool, schema, slot, listener)
	var exists bool
	if err := pool.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL AND to_regclass($2) IS NOT NULL`,
		s.table("observer_checkpoints"), s.table("observer_epochs")).Scan(&exists); err != nil {
		return fmt.Errorf("look for the checkpoint tables: %w", err)
	}
	if !exists {
		return nil
	}
	if err := pgschema.AddColumn(ctx, pool, s.table("observer_checkpoints"), "disabled_at", "timestamptz"); err != nil {
		return err
	}
	tx, err := pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("mark checkpoints disabled: %w", err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, fmt.Sprintf(`UPDATE %s SET epoch = epoch + 1, listener_id = $2, acquired_at = now(), expires_at = NULL WHERE slot_name = $1`,
		s.table("observer_epochs")), slot, listener); err != nil {
		return fmt.Errorf("mark checkpoints disabled: %w", err)
	}
	if _, err := tx.Exec(ctx, fmt.Sprintf(`UPDATE %s SET disabled_at = now(), listener_id = $2 WHERE slot_name = $1 AND action = '*' AND disabled_at IS NULL`,
		s.table("observer_checkpoints")), slot, listener); err != nil {
		return fmt.Errorf("mark checkpoints disabled: %w", err)
	}
	if _, err := tx.Exec(ctx, fmt.Sprintf(`UPDATE %s c SET disabled_at = s.disabled_at FROM %[1]s s
WHERE c.slot_name = $1 AND s.slot_name = $1 AND s.action = '*' AND c.action <> '*' AND c.disabled_at IS NULL`,
		s.table("observer_checkpoints")), slot); err != nil {
		return fmt.Errorf("mark checkpoints disabled: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("mark checkpoints disabled: %w", err)
	}
	return nil
}

// AcquireEpoch takes the next fencing epoch for the slot; later Saves carry it.
func (s *Store) AcquireEpoch(ctx context.Context) (int64, error) {
	err := s.pool.QueryRow(ctx, fmt.Sprintf(`
INSERT INTO %s AS e (slot_name, epoch, listener_id, acquired_at) VALUES ($1, 1, $2, now())
ON CONFLICT (slot_name) DO UPDATE SET epoch = e.epoch + 1, listener_id = EXCLUDED.listener_id, acquired_at = now()
RETURNING epoch`, s.table("observer_epochs")), s.slot, s.listener).Scan(&s.epoch)
	if err != nil {
		return 0, fmt.Errorf("acquire checkpoint epoch: %w", err)
	}
	return s.epoch, nil
}

// Load reads the stored checkpoints of the slot.
func (s *Store) Load(ctx context.Context) (State, error) {
	st := State{Actions: map[string]lsn.Position{}}
	rows, err := s.pool.Query(ctx, fmt.Sprintf(`SELECT action, commit_lsn::text, ordinal, system_id, listener_id, disabled_at FROM %s WHERE slot_name = $1`,
		s.table("observer_checkpoints")), s.slot)
	if err != nil {
		return st, fmt.Errorf("load checkpoints: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var action, l, sys, listener string
		var ord int64
		var disabled *time.Time
		if err := rows.Scan(&action, &l, &ord, &sys, &listener, &disabled); err != nil {
			return st, fmt.Errorf("load checkpoints: %w", err)
		}
		pos, err := lsn.Parse(l)
		if err != nil {
			return st, fmt.Errorf("load checkpoints: %w", err)
		}
		if action == SlotAction {
			st.Slot, st.SystemID = pos, sys
			if disabled != nil {
				st.DisabledAt, st.DisabledBy = disabled, listener
			}
			continue
		}
		st.Actions[action] = lsn.Position{Commit: pos, Ord: uint32(ord)}
	}
	return st, rows.Err()
}

// Save writes the given positions in one transaction. Rows only move forward (a row
// marked by MarkDisabled is overwritten, and its mark cleared) and only for a writer
// whose epoch is current; ErrFenced reports a newer owner. A lock held on the table
// makes Save fail after a short wait instead of blocking.
func (s *Store) Save(ctx context.Context, st State) error {
	actions := make([]string, 0, len(st.Actions)+1)
	lsns := make([]string, 0, len(st.Actions)+1)
	ords := make([]int64, 0, len(st.Actions)+1)
	if st.Slot != 0 {
		actions, lsns, ords = append(actions, SlotAction), append(lsns, st.Slot.String()), append(ords, 0)
	}
	for a, p := range st.Actions {
		actions, lsns, ords = append(actions, a), append(lsns, p.Commit.String()), append(ords, int64(p.Ord))
	}
	if len(actions) == 0 {
		return nil
	}
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("save checkpoints: %w", err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `SELECT set_config('lock_timeout', $1, true)`, lockTimeout); err != nil {
		return fmt.Errorf("save checkpoints: %w", err)
	}
	// The rows first, then the epoch, share-locked until the commit: a newer owner that
	// took the slot before the commit is seen, and one that tries after it waits for
	// it. Waiting for the rows (a lock on the table) never holds up lease renewals,
	// which update the epoch row.
	_, err = tx.Exec(ctx, fmt.Sprintf(`
INSERT INTO %s AS c (slot_name, action, commit_lsn, ordinal, system_id, epoch, listener_id, created_at)
SELECT $1, t.a, t.l::pg_lsn, t.o, $5, $6, $7, now()
FROM unnest($2::text[], $3::text[], $4::bigint[]) AS t(a, l, o)
ON CONFLICT (slot_name, action) DO UPDATE
SET commit_lsn = EXCLUDED.commit_lsn, ordinal = EXCLUDED.ordinal, system_id = EXCLUDED.system_id,
    epoch = EXCLUDED.epoch, listener_id = EXCLUDED.listener_id, created_at = now(), disabled_at = NULL
WHERE c.epoch <= EXCLUDED.epoch AND (c.disabled_at IS NOT NULL OR (c.commit_lsn, c.ordinal) <= (EXCLUDED.commit_lsn, EXCLUDED.ordinal))`,
		s.table("observer_checkpoints")), s.slot, actions, lsns, ords, st.SystemID, s.epoch, s.listener)
	if err != nil {
		return fmt.Errorf("save checkpoints: %w", err)
	}
	var current int64
	err = tx.QueryRow(ctx, fmt.Sprintf(`SELECT epoch FROM %s WHERE slot_name = $1 FOR SHARE`, s.table("observer_epochs")), s.slot).Scan(&current)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("save checkpoints: read epoch: %w", err)
	}
	if current > s.epoch {
		return ErrFenced
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("save checkpoints: %w", err)
	}
	return nil
}
