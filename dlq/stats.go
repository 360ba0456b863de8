package dlq

import (
	"context"
	"fmt"
	"time"
)

// Stats summarises the queue of one slot.
type Stats struct {
	Pending   int64 `json:"pending"`
	Delivered int64 `json:"delivered"`
	// Retries is the number of dlq retry attempts made on the items present.
	Retries int64 `json:"retries"`
	// OldestPending is when the oldest pending item was stored (nil when none).
	OldestPending *time.Time `json:"oldest_pending"`
	// ByObserver and ByError count pending items; filled only when asked for.
	ByObserver []Group `json:"by_observer,omitempty"`
	ByError    []Group `json:"by_error,omitempty"`
}

// Group is the number of pending items sharing an observer, or an error class and
// message.
type Group struct {
	Observer   string `json:"observer,omitempty"`
	Action     string `json:"action,omitempty"`
	ErrorClass string `json:"error_class,omitempty"`
	Error      string `json:"error,omitempty"`
	Count      int64  `json:"count"`
}

// Stats returns the queue's counts, with the breakdowns asked for.
func (s *Store) Stats(ctx context.Context, byObserver, byError bool) (Stats, error) {
	var st Stats
	err := s.pool.QueryRow(ctx, fmt.Sprintf(`
SELECT count(*) FILTER (WHERE status = 'pending'), count(*) FILTER (WHERE status = 'delivered'),
       coalesce(sum(retries), 0), min(created_at) FILTER (WHERE status = 'pending')
FROM %s WHERE slot_name = $1`, s.Table()), s.opts.Slot).Scan(&st.Pending, &st.Delivered, &st.Retries, &st.OldestPending)
	if err != nil {
		return st, fmt.Errorf("DLQ stats: %w", err)
	}
	s.size.Store(st.Pending)
	if byObserver {
		if st.ByObserver, err = s.groups(ctx, "observer, action", func(g *Group) []any { return []any{&g.Observer, &g.Action, &g.Count} }); err != nil {
			return st, err
		}
	}
	if byError {
		if st.ByError, err = s.groups(ctx, "error_class, error", func(g *Group) []any { return []any{&g.ErrorClass, &g.Error, &g.Count} }); err != nil {
			return st, err
		}
	}
	return st, nil
}

func (s *Store) groups(ctx context.Context, cols string, dst func(*Group) []any) ([]Group, error) {
	rows, err := s.pool.Query(ctx, fmt.Sprintf(`SELECT %[1]s, count(*) FROM %[2]s WHERE slot_name = $1 AND status = 'pending'
GROUP BY %[1]s ORDER BY count(*) DESC, %[1]s`, cols, s.Table()), s.opts.Slot)
	if err != nil {
		return nil, fmt.Errorf("DLQ stats: %w", err)
	}
	defer rows.Close()
	out := []Group{}
	for rows.Next() {
		var g Group
		if err := rows.Scan(dst(&g)...); err != nil {
			return nil, fmt.Errorf("DLQ stats: %w", err)
		}
		out = append(out, g)
	}
	return out, rows.Err()
}
