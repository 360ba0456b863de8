package dlq

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/fraiseql/fraiseql-observers/decoder"
)

// Deliverer delivers an item's event again; the dlq retry command builds it from the
// item's action in the configuration.
type Deliverer func(ctx context.Context, it Item, ev *decoder.Event) error

// ErrNotPending is returned when retrying an item that was already delivered.
var ErrNotPending = errors.New("the item is not pending (already delivered)")

// ErrUndecodable is returned by Retry for an item recording a change that could not
// be decoded into an event (action "*"): there is nothing to deliver.
var ErrUndecodable = errors.New("the item has no event to deliver")

// ErrBusy is returned when another process is retrying the same item.
var ErrBusy = errors.New("another process is retrying this item right now")

// RetryError is a failed re-delivery; the item stays pending with the error recorded
// in last_retry_error.
type RetryError struct {
	ID  int64
	Err error
}

// Error says which item failed again and why.
func (e *RetryError) Error() string {
	return fmt.Sprintf("DLQ item %d: delivery failed again: %v", e.ID, e.Err)
}

// Unwrap returns the delivery error.
func (e *RetryError) Unwrap() error { return e.Err }

// Retry delivers the pending item's event again with deliver, holding a row lock so
// two operators never deliver it at once. On success the item is marked delivered (it
// is kept, and no longer counted as pending); on failure its retry count, time and error
// are recorded, it stays pending, and the error is a *RetryError. The event keeps its
// original id, so receivers that deduplicate by id see a redelivery.
func (s *Store) Retry(ctx context.Context, id int64, deliver Deliverer) (Item, error) {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return Item{}, fmt.Errorf("retry DLQ item %d: %w", id, err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	it, err := scanItem(tx.QueryRow(ctx, fmt.Sprintf(`SELECT %s, event::text FROM %s WHERE id = $1 AND slot_name = $2 FOR UPDATE NOWAIT`,
		itemColumns, s.Table()), id, s.opts.Slot), true)
	var pgErr *pgconn.PgError
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return it, fmt.Errorf("DLQ item %d: %w", id, ErrNotFound)
	case errors.As(err, &pgErr) && pgErr.Code == "55P03": // lock_not_available
		return it, fmt.Errorf("DLQ item %d: %w", id, ErrBusy)
	case err != nil:
		return it, fmt.Errorf("retry DLQ item %d: %w", id, err)
	case it.Status != StatusPending:
		return it, fmt.Errorf("DLQ item %d: %w", id, ErrNotPending)
	}
	if it.Action == "*" {
		return it, fmt.Errorf("DLQ item %d records a change that could not be decoded (%s: %s); it has no action to retry.\n%s%w",
			id, it.ErrorClass, it.Error, RecoveryHint(it), ErrUndecodable)
	}
	ev, err := decoder.ParseEvent(it.Event)
	if err != nil {
		return it, fmt.Errorf("DLQ item %d: stored event: %w", id, err)
	}
	derr := deliver(ctx, it, ev)
	var msg *string
	status := StatusDelivered
	if derr != nil {
		m := derr.Error()
		msg, status = &m, StatusPending
	}
	err = tx.QueryRow(ctx, fmt.Sprintf(`UPDATE %s SET status = $2, retries = retries + 1, last_retry_at = now(), last_retry_error = $3
WHERE id = $1 RETURNING status, retries, last_retry_at, last_retry_error`, s.Table()), id, status, msg).
		Scan(&it.Status, &it.Retries, &it.LastRetryAt, &it.LastRetryError)
	if err == nil {
		err = tx.Commit(ctx)
	}
	if err != nil {
		if derr == nil {
			return it, fmt.Errorf("DLQ item %d was delivered but could not be marked delivered (a later retry delivers it again): %w", id, err)
		}
		return it, fmt.Errorf("retry DLQ item %d: record the failure: %w", id, err)
	}
	if derr != nil {
		return it, &RetryError{ID: id, Err: derr}
	}
	s.size.Add(-1)
	return it, nil
}

// undeliverable is the event JSON PutUndeliverable stores.
type undeliverable struct {
	CommitLSN string                     `json:"commit_lsn"`
	Schema    string                     `json:"schema"`
	Table     string                     `json:"table"`
	Reason    string                     `json:"undeliverable"`
	Size      int64                      `json:"size"`
	Limit     int64                      `json:"limit"`
	Key       map[string]json.RawMessage `json:"key"`
}

// RecoveryHint tells the operator, with the exact commands, how to deliver the change
// an undeliverable item (action "*") records; "" for other items. It needs the item's
// event (Get, not List).
func RecoveryHint(it Item) string {
	if it.Action != "*" {
		return ""
	}
	var u undeliverable
	if err := json.Unmarshal(it.Event, &u); err != nil || u.CommitLSN == "" {
		u = undeliverable{CommitLSN: it.CommitLSN, Schema: it.Schema, Table: it.Table, Reason: it.ErrorClass}
	}
	table := pgx.Identifier{u.Schema, u.Table}.Sanitize()
	var b strings.Builder
	b.WriteString("To deliver this change:\n")
	step := 1
	if u.Reason == "too_large" {
		if u.Size > 0 {
			fmt.Fprintf(&b, "  %d. Raise source.max_event_bytes above %d bytes (the event's size; the limit was %d) and restart the service.\n", step, u.Size, u.Limit)
		} else {
			fmt.Fprintf(&b, "  %d. Raise source.max_event_bytes and restart the service.\n", step)
		}
	} else {
		fmt.Fprintf(&b, "  %d. Fix the cause (%s): the data, or the column's type.\n", step, u.Reason)
	}
	step++
	fmt.Fprintf(&b, "  %d. Either deliver its transaction again, with its original event ids (only while the slot still holds that WAL: set replay_window):\n"+
		"       fraiseql-observers replay --from-lsn %s --to-lsn %s\n", step, u.CommitLSN, u.CommitLSN)
	if where := keyWhere(u.Key); where != "" {
		fmt.Fprintf(&b, "     or deliver the row as it is now, read by its key, to each observer of %s.%s (a READ event):\n"+
			"       fraiseql-observers snapshot --table %s.%s --where %s --observer NAME\n", u.Schema, u.Table, u.Schema, u.Table, shellQuote(where))
	} else {
		fmt.Fprintf(&b, "     or deliver the rows of %s as they are now (a READ event; the key was not recorded):\n"+
			"       fraiseql-observers snapshot --table %s.%s --where 'CONDITION' --observer NAME\n", table, u.Schema, u.Table)
	}
	step++
	fmt.Fprintf(&b, "  %d. Remove the item: fraiseql-observers dlq remove %d\n", step, it.ID)
	return b.String()
}

// keyWhere writes an SQL condition selecting the row with key k: "id" = 5.
func keyWhere(k map[string]json.RawMessage) string {
	if len(k) == 0 {
		return ""
	}
	names := make([]string, 0, len(k))
	for n := range k {
		names = append(names, n)
	}
	sort.Strings(names)
	var parts []string
	for _, n := range names {
		var v any
		d := json.NewDecoder(bytes.NewReader(k[n]))
		d.UseNumber()
		if d.Decode(&v) != nil {
			return ""
		}
		var lit string
		switch x := v.(type) {
		case string:
			lit = "'" + strings.ReplaceAll(x, "'", "''") + "'"
		case json.Number:
			lit = x.String()
		case bool:
			lit = fmt.Sprint(x)
		default:
			// A key of another JSON shape (jsonb, arrays): compare as text.
			lit = "'" + strings.ReplaceAll(string(k[n]), "'", "''") + "'"
		}
		parts = append(parts, pgx.Identifier{n}.Sanitize()+" = "+lit)
	}
	return strings.Join(parts, " AND ")
}

// shellQuote quotes s for a POSIX shell.
func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }
