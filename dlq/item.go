package dlq

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// Item statuses.
const (
	StatusPending   = "pending"   // waiting for an operator (counted by observer_dlq_items_total)
	StatusDelivered = "delivered" // delivered by dlq retry; kept for the record
)

// Item is one row of observer_dlq. Event is the event JSON as stored (docs/events.md);
// it holds row values, so it is shown only to an operator who asks for the item.
type Item struct {
	ID             int64           `json:"id"`
	Slot           string          `json:"slot"`
	EventID        string          `json:"event_id"`
	CommitLSN      string          `json:"commit_lsn"`
	Ordinal        int64           `json:"ordinal"`
	Schema         string          `json:"schema"`
	Table          string          `json:"table"`
	Op             string          `json:"op"`
	Observer       string          `json:"observer"`
	Action         string          `json:"action"`
	ActionType     string          `json:"action_type"`
	Error          string          `json:"error"`
	ErrorClass     string          `json:"error_class"`
	Attempts       int             `json:"attempts"`
	FirstAttemptAt *time.Time      `json:"first_attempt_at"`
	LastAttemptAt  *time.Time      `json:"last_attempt_at"`
	Status         string          `json:"status"`
	Retries        int             `json:"retries"`
	LastRetryAt    *time.Time      `json:"last_retry_at"`
	LastRetryError *string         `json:"last_retry_error"`
	CreatedAt      time.Time       `json:"created_at"`
	Event          json.RawMessage `json:"event,omitempty"`
}

// ErrNotFound is returned for an id that is not in the queue of this slot.
var ErrNotFound = errors.New("no such DLQ item")

const itemColumns = `id, slot_name, event_id, commit_lsn::text, ordinal, schema_name, table_name, op, observer, action, action_type,
error, error_class, attempts, first_attempt_at, last_attempt_at, status, retries, last_retry_at, last_retry_error, created_at`

func scanItem(row pgx.Row, withEvent bool) (Item, error) {
	var it Item
	dst := []any{&it.ID, &it.Slot, &it.EventID, &it.CommitLSN, &it.Ordinal, &it.Schema, &it.Table, &it.Op, &it.Observer,
		&it.Action, &it.ActionType, &it.Error, &it.ErrorClass, &it.Attempts, &it.FirstAttemptAt, &it.LastAttemptAt,
		&it.Status, &it.Retries, &it.LastRetryAt, &it.LastRetryError, &it.CreatedAt}
	var event string
	if withEvent {
		dst = append(dst, &event)
	}
	if err := row.Scan(dst...); err != nil {
		return it, err
	}
	if withEvent {
		it.Event = json.RawMessage(event)
	}
	return it, nil
}

// Get returns the item with the given id, with its event.
func (s *Store) Get(ctx context.Context, id int64) (Item, error) {
	it, err := scanItem(s.pool.QueryRow(ctx, fmt.Sprintf(`SELECT %s, event::text FROM %s WHERE id = $1 AND slot_name = $2`,
		itemColumns, s.Table()), id, s.opts.Slot), true)
	if errors.Is(err, pgx.ErrNoRows) {
		return it, fmt.Errorf("DLQ item %d: %w", id, ErrNotFound)
	}
	if err != nil {
		return it, fmt.Errorf("read DLQ item %d: %w", id, err)
	}
	return it, nil
}

// ListOptions selects items for List. The zero value lists pending items, oldest first.
type ListOptions struct {
	Limit    int       // 0 = no limit
	Offset   int       //
	Observer string    // "" = every observer
	After    time.Time // only items created after this time (zero = any)
	// Status is pending (default), delivered or all.
	Status string
}

// List returns the items selected by o, without their events, ordered by id.
func (s *Store) List(ctx context.Context, o ListOptions) ([]Item, error) {
	where := []string{"slot_name = $1"}
	args := []any{s.opts.Slot}
	switch o.Status {
	case "", StatusPending:
		where = append(where, "status = 'pending'")
	case StatusDelivered:
		where = append(where, "status = 'delivered'")
	case "all":
	default:
		return nil, fmt.Errorf("list DLQ items: unknown status %q (pending, delivered or all)", o.Status)
	}
	if o.Observer != "" {
		args = append(args, o.Observer)
		where = append(where, fmt.Sprintf("observer = $%d", len(args)))
	}
	if !o.After.IsZero() {
		args = append(args, o.After)
		where = append(where, fmt.Sprintf("created_at > $%d", len(args)))
	}
	sql := fmt.Sprintf(`SELECT %s FROM %s WHERE %s ORDER BY id`, itemColumns, s.Table(), strings.Join(where, " AND "))
	if o.Limit > 0 {
		sql += fmt.Sprintf(" LIMIT %d", o.Limit)
	}
	if o.Offset > 0 {
		sql += fmt.Sprintf(" OFFSET %d", o.Offset)
	}
	rows, err := s.pool.Query(ctx, sql, args...)
	if err != nil {
		return nil, fmt.Errorf("list DLQ items: %w", err)
	}
	defer rows.Close()
	var out []Item
	for rows.Next() {
		it, err := scanItem(rows, false)
		if err != nil {
			return nil, fmt.Errorf("list DLQ items: %w", err)
		}
		out = append(out, it)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list DLQ items: %w", err)
	}
	return out, nil
}

// Remove deletes the item for good (any status) and returns it as it was.
func (s *Store) Remove(ctx context.Context, id int64) (Item, error) {
	it, err := scanItem(s.pool.QueryRow(ctx, fmt.Sprintf(`DELETE FROM %s WHERE id = $1 AND slot_name = $2 RETURNING %s`,
		s.Table(), itemColumns), id, s.opts.Slot), false)
	if errors.Is(err, pgx.ErrNoRows) {
		return it, fmt.Errorf("DLQ item %d: %w", id, ErrNotFound)
	}
	if err != nil {
		return it, fmt.Errorf("remove DLQ item %d: %w", id, err)
	}
	if it.Status == StatusPending {
		s.size.Add(-1)
	}
	return it, nil
}
