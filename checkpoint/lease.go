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
	// Remaining is how long the lease still ran when it was read, by the server's
	// clock (negative once expired; 0 without expiry).
	Remaining time.Duration
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
		s.leaseTo.Store(time.Now().Add(d).UnixNano())
		return true, Holder{ListenerID: s.listener, Epoch: s.epoch}, nil
	}
	if !errors.Is(err, pgx.ErrNoRows) {
		return false, Holder{}, fmt.Errorf("take the lease of slot %s: %w", s.slot, err)
	}
	var h Holder
	var exp *time.Time
	var remaining *float64
	err = s.pool.QueryRow(ctx, fmt.Sprintf(`SELECT listener_id, epoch, expires_at, extract(epoch FROM expires_at - now())::float8 FROM %s WHERE slot_name = $1`,
		s.table("observer_epochs")), s.slot).Scan(&h.ListenerID, &h.Epoch, &exp, &remaining)
	if err != nil {
		return false, Holder{}, fmt.Errorf("read the lease of slot %s: %w", s.slot, err)
	}
	if exp != nil {
		h.ExpiresAt = *exp
	}
	if remaining != nil {
		h.Remaining = time.Duration(*remaining * float64(time.Second))
	}
	return false, h, nil
}

// RenewLease extends our lease by d. A lease that expired while renewals could not
// reach the server (PostgreSQL restarting, a lock, a network cut) is renewed as long
// as nobody took it: the row still carries our listener id and epoch. ErrFenced means
// that another instance holds the slot's lease under a newer epoch: the caller must
// stop streaming and delivering. Any other error says nothing about the lease.
func (s *Store) RenewLease(ctx context.Context, d time.Duration) error {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("renew the lease of slot %s: %w", s.slot, err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `SELECT set_config('lock_timeout', $1, true)`, lockTimeout); err != nil {
		return fmt.Errorf("renew the lease of slot %s: %w", s.slot, err)
	}
	tag, err := tx.Exec(ctx, fmt.Sprintf(`
UPDATE %s SET expires_at = now() + $4 * interval '1 microsecond'
WHERE slot_name = $1 AND listener_id = $2 AND epoch = $3`, s.table("observer_epochs")),
		s.slot, s.listener, s.epoch, d.Microseconds())
	if err != nil {
		return fmt.Errorf("renew the lease of slot %s: %w", s.slot, err)
	}
	if tag.RowsAffected() == 0 {
		// The row is not ours any more: someone took it, or it was deleted by hand
		// (then nobody holds the lease, and it is ours again).
		tag, err = tx.Exec(ctx, fmt.Sprintf(`
INSERT INTO %s (slot_name, epoch, listener_id, acquired_at, expires_at)
VALUES ($1, $3, $2, now(), now() + $4 * interval '1 microsecond') ON CONFLICT (slot_name) DO NOTHING`, s.table("observer_epochs")),
			s.slot, s.listener, s.epoch, d.Microseconds())
		if err != nil {
			return fmt.Errorf("renew the lease of slot %s: %w", s.slot, err)
		}
		if tag.RowsAffected() == 0 {
			var h Holder
			err := tx.QueryRow(ctx, fmt.Sprintf(`SELECT listener_id, epoch FROM %s WHERE slot_name = $1`, s.table("observer_epochs")), s.slot).
				Scan(&h.ListenerID, &h.Epoch)
			if err != nil {
				return fmt.Errorf("read the lease of slot %s: %w", s.slot, err)
			}
			return fmt.Errorf("%w: %s holds the lease of slot %s under epoch %d (ours was %d)", ErrFenced, h.ListenerID, s.slot, h.Epoch, s.epoch)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("renew the lease of slot %s: %w", s.slot, err)
	}
	s.leaseTo.Store(time.Now().Add(d).UnixNano())
	return nil
}

// LeaseExpiry returns when our lease expires as of its last renewal, by this host's
// clock (zero before the lease was taken).
func (s *Store) LeaseExpiry() time.Time {
	if n := s.leaseTo.Load(); n != 0 {
		return time.Unix(0, n)
	}
	return time.Time{}
}

// ReleaseLease ends our lease at once, so a standby can take over without waiting for
// it to expire. Releasing a lease we no longer hold changes nothing.
func (s *Store) ReleaseLease(ctx context.Context) error {
	_, err := s.pool.Exec(ctx, fmt.Sprintf(`UPDATE %s SET expires_at = now() - interval '1 second'
WHERE slot_name = $1 AND listener_id = $2 AND epoch = $3`, s.table("observer_epochs")), s.slot, s.listener, s.epoch)
	if err != nil {
		return fmt.Errorf("release the lease of slot %s: %w", s.slot, err)
	}
	s.leaseTo.Store(0)
	return nil
}

// Epoch returns the fencing epoch taken by AcquireEpoch or TryLease.
func (s *Store) Epoch() int64 { return s.epoch }
