package checkpoint

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Holder describes who holds the slot's lease.
type Holder struct {
	ListenerID string
	Epoch      int64
	ExpiresAt  time.Time // zero when the holder runs without failover (no expiry)
}

// TryLease takes the slot's lease for d when it is free (never taken, expired, or
// already ours by listener id) and returns true with the new fencing epoch; otherwise
// it returns false and the current holder. The row of observer_epochs is the lease:
// whoever holds it is the only instance that streams and writes checkpoints.
func (s *Store) TryLease(ctx context.Context, d time.Duration) (bool, Holder, error) {
	err := s.pool.QueryRow(ctx, fmt.Sprintf(`
INSERT INTO %s AS e (slot_name, epoch, listener_id, acquired_at, expires_at)
VALUES ($1, 1, $2, now(), now() + $3 * interval '1 microsecond')
ON CONFLICT (slot_name) DO UPDATE
SET epoch = e.epoch + 1, listener_id = EXCLUDED.listener_id, acquired_at = now(), expires_at = EXCLUDED.expires_at
WHERE e.expires_at IS NULL OR e.expires_at < now() OR e.listener_id = EXCLUDED.listener_id
RETURNING epoch`, s.table("observer_epochs")), s.slot, s.listener, d.Microseconds()).Scan(&s.epoch)
	if err == nil {
		return true, Holder{ListenerID: s.listener, Epoch: s.epoch}, nil
	}
	if !errors.Is(err, pgx.ErrNoRows) {
		return false, Holder{}, fmt.Errorf("take the lease of slot %s: %w", s.slot, err)
	}
	var h Holder
	var exp *time.Time
	err = s.pool.QueryRow(ctx, fmt.Sprintf(`SELECT listener_id, epoch, expires_at FROM %s WHERE slot_name = $1`, s.table("observer_epochs")),
		s.slot).Scan(&h.ListenerID, &h.Epoch, &exp)
	if err != nil {
		return false, Holder{}, fmt.Errorf("read the lease of slot %s: %w", s.slot, err)
	}
	if exp != nil {
		h.ExpiresAt = *exp
	}
	return false, h, nil
}

// RenewLease extends our lease by d. ErrFenced means another instance has taken it:
// the caller must stop streaming and delivering.
func (s *Store) RenewLease(ctx context.Context, d time.Duration) error {
	tag, err := s.pool.Exec(ctx, fmt.Sprintf(`
UPDATE %s SET expires_at = now() + $4 * interval '1 microsecond'
WHERE slot_name = $1 AND listener_id = $2 AND epoch = $3 AND expires_at >= now()`, s.table("observer_epochs")),
		s.slot, s.listener, s.epoch, d.Microseconds())
	if err != nil {
		return fmt.Errorf("renew the lease of slot %s: %w", s.slot, err)
	}
	if tag.RowsAffected() == 0 {
		return ErrFenced
	}
	return nil
}

// ReleaseLease ends our lease at once, so a standby can take over without waiting for
// it to expire. Releasing a lease we no longer hold changes nothing.
func (s *Store) ReleaseLease(ctx context.Context) error {
	_, err := s.pool.Exec(ctx, fmt.Sprintf(`UPDATE %s SET expires_at = now() - interval '1 second'
WHERE slot_name = $1 AND listener_id = $2 AND epoch = $3`, s.table("observer_epochs")), s.slot, s.listener, s.epoch)
	if err != nil {
		return fmt.Errorf("release the lease of slot %s: %w", s.slot, err)
	}
	return nil
}

// Epoch returns the fencing epoch taken by AcquireEpoch or TryLease.
func (s *Store) Epoch() int64 { return s.epoch }
