package checkpoint

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Stored is one checkpoint row as an operator sees it (status).
type Stored struct {
	Action     string // SlotAction for the slot-wide row
	Position   string // the slot row's LSN; an action's LSN:ordinal
	ListenerID string
	UpdatedAt  time.Time
	AgeSeconds float64 // by the server's clock
	// DisabledAt is set when an instance has streamed the slot with checkpoints
	// disabled since this row was written: the slot's position supersedes it.
	DisabledAt *time.Time
}

// tableExists reports whether schema.name exists.
func tableExists(ctx context.Context, pool *pgxpool.Pool, schema, name string) (bool, error) {
	var ok bool
	err := pool.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", pgx.Identifier{schema, name}.Sanitize()).Scan(&ok)
	return ok, err
}

// ReadStored returns the slot's checkpoints, the slot-wide row first, then the
// actions' by name; none when the table does not exist (yet).
func ReadStored(ctx context.Context, pool *pgxpool.Pool, schema, slot string) ([]Stored, error) {
	if ok, err := tableExists(ctx, pool, schema, CheckpointsTable); err != nil || !ok {
		if err != nil {
			return nil, fmt.Errorf("read checkpoints: %w", err)
		}
		return nil, nil
	}
	// disabled_at through to_jsonb: tables of an earlier version lack the column.
	rows, err := pool.Query(ctx, fmt.Sprintf(`SELECT action, commit_lsn::text, ordinal, listener_id, created_at,
       extract(epoch FROM now() - created_at)::float8, (to_jsonb(c) ->> 'disabled_at')::timestamptz
FROM %s c WHERE slot_name = $1 ORDER BY action = '*' DESC, action`, pgx.Identifier{schema, CheckpointsTable}.Sanitize()), slot)
	if err != nil {
		return nil, fmt.Errorf("read checkpoints: %w", err)
	}
	defer rows.Close()
	var out []Stored
	for rows.Next() {
		var c Stored
		var l string
		var ord int64
		if err := rows.Scan(&c.Action, &l, &ord, &c.ListenerID, &c.UpdatedAt, &c.AgeSeconds, &c.DisabledAt); err != nil {
			return nil, fmt.Errorf("read checkpoints: %w", err)
		}
		c.Position = l
		if c.Action != SlotAction {
			c.Position = fmt.Sprintf("%s:%d", l, ord)
		}
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read checkpoints: %w", err)
	}
	return out, nil
}

// ReadLease returns the holder of the slot's lease as stored; the zero Holder when
// nobody ever took it or the table does not exist (yet). ExpiresAt is zero for a
// holder without expiry; Remaining is not set.
func ReadLease(ctx context.Context, pool *pgxpool.Pool, schema, slot string) (Holder, error) {
	var h Holder
	if ok, err := tableExists(ctx, pool, schema, EpochsTable); err != nil || !ok {
		return h, nil // as before: an unreadable catalog leaves the lease unknown
	}
	var exp *time.Time
	err := pool.QueryRow(ctx, fmt.Sprintf(`SELECT listener_id, epoch, expires_at FROM %s WHERE slot_name = $1`,
		pgx.Identifier{schema, EpochsTable}.Sanitize()), slot).Scan(&h.ListenerID, &h.Epoch, &exp)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return Holder{}, fmt.Errorf("read the slot's lease: %w", err)
	}
	if exp != nil {
		h.ExpiresAt = *exp
	}
	return h, nil
}
