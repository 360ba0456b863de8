// Package dlq is the durable dead-letter queue: events whose action failed for good,
// stored in PostgreSQL (observer_dlq) with the observer, action, error, attempt count
// and timestamps, so an operator can inspect, retry or remove them.
package dlq

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fraiseql/fraiseql-observers/decoder"
	"github.com/fraiseql/fraiseql-observers/internal/pgschema"
	"github.com/fraiseql/fraiseql-observers/lsn"
)

// ErrFull is returned by Put when the queue holds MaxSize items. The event is then not
// settled: the action holds it (and the slot does not advance past it) until an operator
// makes room, so a full DLQ never loses an event.
var ErrFull = errors.New("dead-letter queue is full (dlq.max_dlq_size); retry or remove items to make room")

// Options configures a Store.
type Options struct {
	Schema  string // default "public"
	Slot    string // the slot the letters come from
	MaxSize int64  // 0 = unbounded
	Metrics *metrics.Set
}

// TableName is the DLQ table, in the state schema.
const TableName = "observer_dlq"

// Store is the observer_dlq table. It is safe for concurrent use.
type Store struct {
	pool     *pgxpool.Pool
	opts     Options
	size     atomic.Int64 // cached pending count, refreshed by Put and Count
	overflow *metrics.Counter
}

// NewStore returns a Store using pool.
func NewStore(pool *pgxpool.Pool, opts Options) *Store {
	if opts.Schema == "" {
		opts.Schema = "public"
	}
	s := &Store{pool: pool, opts: opts}
	set := opts.Metrics
	if set == nil {
		set = metrics.NewSet()
	}
	s.overflow = set.GetOrCreateCounter("observer_dlq_overflow_total")
	// The seed's name: a gauge of pending items (not a counter, despite _total).
	set.GetOrCreateGauge("observer_dlq_items_total", func() float64 { return float64(s.size.Load()) })
	return s
}

// Table returns the quoted, schema-qualified table name.
func (s *Store) Table() string { return pgx.Identifier{s.opts.Schema, TableName}.Sanitize() }

// Migrate creates the table when it does not exist.
func (s *Store) Migrate(ctx context.Context) error {
	sql := fmt.Sprintf(`
CREATE TABLE IF NOT EXISTS %[1]s (
	id               bigserial   PRIMARY KEY,
	slot_name        text        NOT NULL,
	event_id         text        NOT NULL,
	commit_lsn       pg_lsn      NOT NULL,
	ordinal          bigint      NOT NULL,
	schema_name      text        NOT NULL,
	table_name       text        NOT NULL,
	op               text        NOT NULL,
	observer         text        NOT NULL,
	action           text        NOT NULL,
	action_type      text        NOT NULL,
	error            text        NOT NULL,
	error_class      text        NOT NULL,
	attempts         integer     NOT NULL,
	first_attempt_at timestamptz,
	last_attempt_at  timestamptz,
	event            json        NOT NULL,
	status           text        NOT NULL DEFAULT 'pending',
	retries          integer     NOT NULL DEFAULT 0,
	last_retry_at    timestamptz,
	last_retry_error text,
	created_at       timestamptz NOT NULL DEFAULT now(),
	UNIQUE (slot_name, action, event_id)
);
CREATE INDEX IF NOT EXISTS observer_dlq_status_idx ON %[1]s (status, created_at);`, s.Table())
	if err := pgschema.Ensure(ctx, s.pool, s.opts.Schema, []string{TableName}, sql); err != nil {
		return fmt.Errorf("create dlq table: %w", err)
	}
	_, err := s.Count(ctx)
	return err
}

// Count returns the number of pending items and refreshes the cached size.
func (s *Store) Count(ctx context.Context) (int64, error) {
	var n int64
	if err := s.pool.QueryRow(ctx, fmt.Sprintf(`SELECT count(*) FROM %s WHERE status = 'pending'`, s.Table())).Scan(&n); err != nil {
		return 0, fmt.Errorf("count dlq items: %w", err)
	}
	s.size.Store(n)
	return n, nil
}

// ItemsOf returns the ids of the items (of any status) holding the event eventID
// ("0/16B3748:3"), oldest first.
func (s *Store) ItemsOf(ctx context.Context, eventID string) ([]int64, error) {
	rows, err := s.pool.Query(ctx, fmt.Sprintf("SELECT id FROM %s WHERE slot_name = $1 AND event_id = $2 ORDER BY id", s.Table()), s.opts.Slot, eventID)
	if err != nil {
		return nil, fmt.Errorf("read the dlq items of event %s: %w", eventID, err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return nil, fmt.Errorf("read the dlq items of event %s: %w", eventID, err)
	}
	return ids, nil
}

// Size returns the pending count as last seen (cheap; for metrics). Put, Retry and
// Remove keep it current for this process; Count refreshes it from the table, which
// other processes (the dlq commands) change too.
func (s *Store) Size() int64 { return s.size.Load() }

// Letter is an event whose action failed for good, as the DLQ stores it. The service
// builds it from the pipeline's dead letter, naming the failure's class (the DLQ's
// error_class: "http_400", "ssrf_blocked", "transient", ...) as the pipeline
// classifies it; the store does not interpret Err beyond its text.
type Letter struct {
	Event      *decoder.Event
	Observer   string
	Action     string // action id ("observer.name")
	ActionType string
	Err        error
	// ErrorClass is stored as error_class ("permanent" when empty).
	ErrorClass string
	Attempts   int
	FirstTry   time.Time
	LastTry    time.Time
}

// Put stores a dead letter. Storing the same (action, event) again — a replay after a
// crash — updates the existing row instead of adding one. Put returns ErrFull, storing
// nothing, when the queue holds Options.MaxSize pending items. Safe for concurrent use.
func (s *Store) Put(ctx context.Context, dl Letter) error {
	if s.opts.MaxSize > 0 && s.size.Load() >= s.opts.MaxSize {
		if n, err := s.Count(ctx); err != nil || n >= s.opts.MaxSize {
			s.overflow.Inc()
			return ErrFull
		}
	}
	ev := dl.Event
	class := dl.ErrorClass
	if class == "" {
		class = "permanent"
	}
	msg := "unknown error"
	if dl.Err != nil {
		msg = dl.Err.Error()
	}
	var inserted bool
	err := s.pool.QueryRow(ctx, fmt.Sprintf(`
INSERT INTO %s (slot_name, event_id, commit_lsn, ordinal, schema_name, table_name, op, observer, action, action_type,
                error, error_class, attempts, first_attempt_at, last_attempt_at, event)
VALUES ($1, $2, $3::pg_lsn, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16::json)
ON CONFLICT (slot_name, action, event_id) DO UPDATE
SET error = EXCLUDED.error, error_class = EXCLUDED.error_class, attempts = EXCLUDED.attempts,
    last_attempt_at = EXCLUDED.last_attempt_at, status = 'pending'
RETURNING (xmax = 0)`, s.Table()),
		s.opts.Slot, ev.ID.String(), ev.ID.Commit.String(), int64(ev.ID.Ord), ev.Schema, ev.Table, ev.Op.String(),
		dl.Observer, dl.Action, dl.ActionType, msg, class, dl.Attempts, nullTime(dl.FirstTry), nullTime(dl.LastTry),
		string(ev.JSON())).Scan(&inserted)
	if err != nil {
		return fmt.Errorf("store dead letter: %w", err)
	}
	if inserted {
		s.size.Add(1)
	}
	return nil
}

func nullTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

// PutUndeliverable stores a change that could not be turned into an event (too large,
// invalid text): it has no action, so it is recorded with observer "" and action "*",
// action type "decode" and an event holding only its position, table and reason (and,
// for a change too large, its size, the limit and its key when known). It cannot be
// retried from the DLQ; RecoveryHint says what the operator can do instead.
func (s *Store) PutUndeliverable(ctx context.Context, id lsn.Position, at lsn.LSN, schema, table, reason string, cause error) error {
	b := []byte(`{"id":"`)
	b = id.AppendText(b)
	b = append(b, `","lsn":"`...)
	b = at.AppendText(b)
	b = append(b, `","commit_lsn":"`...)
	b = id.Commit.AppendText(b)
	b = append(b, `","schema":`...)
	b = decoder.AppendJSONString(b, schema)
	b = append(b, `,"table":`...)
	b = decoder.AppendJSONString(b, table)
	b = append(b, `,"undeliverable":`...)
	b = decoder.AppendJSONString(b, reason)
	var tl *decoder.TooLargeError
	if errors.As(cause, &tl) {
		// What recovery needs (RecoveryHint): the size against the limit, and the key
		// to read the row again by.
		b = fmt.Appendf(b, `,"size":%d,"limit":%d`, tl.Size, tl.Limit)
		if tl.Key != nil {
			b = append(b, `,"key":`...)
			b = tl.Key.AppendJSON(b)
		}
	}
	b = append(b, '}')
	_, err := s.pool.Exec(ctx, fmt.Sprintf(`
INSERT INTO %s (slot_name, event_id, commit_lsn, ordinal, schema_name, table_name, op, observer, action, action_type,
                error, error_class, attempts, first_attempt_at, last_attempt_at, event)
VALUES ($1, $2, $3::pg_lsn, $4, $5, $6, 'UNKNOWN', '', '*', 'decode', $7, $8, 0, now(), now(), $9::json)
ON CONFLICT (slot_name, action, event_id) DO NOTHING`, s.Table()),
		s.opts.Slot, id.String(), id.Commit.String(), int64(id.Ord), schema, table, cause.Error(), reason, string(b))
	if err != nil {
		return fmt.Errorf("store undeliverable change: %w", err)
	}
	return nil
}
