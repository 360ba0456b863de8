package service

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/fraiseql/fraiseql-observers/cdc"
	"github.com/fraiseql/fraiseql-observers/checkpoint"
)

// ErrStoppedAsStandby ends a standby that was stopped before it took the lease.
var ErrStoppedAsStandby = errors.New("stopped while standing by")

// leaseSeen is the slot's lease as a standby last read it.
type leaseSeen struct {
	ListenerID string
	Epoch      int64
	expires    time.Time // by this host's clock
}

// waitForLease blocks until this instance holds the slot's lease (failover.enabled),
// recording itself as a standby in the listener registry and answering on the admin
// endpoint meanwhile. Once it holds the lease it ends the walsender of a previous
// leader that still holds the slot (a crashed or paused process whose lease expired).
func (s *Service) waitForLease(ctx context.Context, cps *checkpoint.Store) error {
	cfg := s.cfg
	s.startHeartbeat()
	var last checkpoint.Holder
	failing := false
	for {
		ok, h, err := cps.TryLease(ctx, cfg.Failover.LeaseDuration)
		switch {
		case err != nil:
			if ctx.Err() != nil {
				return ErrStoppedAsStandby
			}
			if !failing {
				s.log.Warn().Err(err).Msg("cannot read the slot's lease; will retry")
				failing = true
			}
		case ok:
			s.ops.epoch.Store(h.Epoch)
			s.log.Info().Str("slot", cfg.Source.Slot).Int64("epoch", h.Epoch).Msg("took the slot's lease: leading")
			return s.takeOverSlot(ctx)
		default:
			failing = false
			s.holder.Store(&leaseSeen{ListenerID: h.ListenerID, Epoch: h.Epoch, expires: time.Now().Add(h.Remaining)})
			if h.ListenerID != last.ListenerID || h.Epoch != last.Epoch {
				last = h
				s.log.Info().Str("slot", cfg.Source.Slot).Str("leader", h.ListenerID).Int64("epoch", h.Epoch).
					Time("lease_expires", h.ExpiresAt).Msg("standing by: another instance holds the slot's lease")
			}
		}
		select {
		case <-ctx.Done():
			return ErrStoppedAsStandby
		case <-time.After(cfg.Failover.RenewInterval):
		}
	}
}

// takeOverSlot waits until the slot is free, ending the walsender of a previous leader
// of ours (recognised by its application name) that still holds it; a foreign holder
// is never terminated.
func (s *Service) takeOverSlot(ctx context.Context) error {
	cfg := s.cfg
	app := "fraiseql-observers"
	if cc, err := ConnConfig(cfg); err == nil && cc.RuntimeParams["application_name"] != "" {
		app = cc.RuntimeParams["application_name"]
	}
	deadline := time.Now().Add(cfg.Failover.LeaseDuration + time.Minute)
	for {
		slot, err := cdc.ReadSlot(ctx, s.pool, cfg.Source.Slot)
		if err != nil {
			return fmt.Errorf("read slot %s: %w", cfg.Source.Slot, err)
		}
		if !slot.Exists || !slot.Active {
			return nil
		}
		var holderApp string
		err = s.pool.QueryRow(ctx, `SELECT coalesce((SELECT application_name FROM pg_stat_replication WHERE pid = $1), '')`, slot.ActivePID).Scan(&holderApp)
		if err != nil {
			return fmt.Errorf("read the slot's holder: %w", err)
		}
		if holderApp != app {
			return &cdc.PreflightError{Check: "slot", Msg: fmt.Sprintf("slot %q is held by PID %d (application_name %q), not by an instance of ours",
				cfg.Source.Slot, slot.ActivePID, holderApp), Hint: "stop the other consumer; only one reader per slot is possible"}
		}
		if _, err := s.pool.Exec(ctx, `SELECT pg_terminate_backend($1)`, slot.ActivePID); err != nil {
			return fmt.Errorf("end the previous leader's walsender (PID %d): %w", slot.ActivePID, err)
		}
		s.log.Warn().Int32("walsender_pid", slot.ActivePID).Msg("ended the replication session of the previous leader, whose lease expired")
		if time.Now().After(deadline) {
			return fmt.Errorf("slot %s is still in use after ending its walsender", cfg.Source.Slot)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// renewLease renews the lease every failover.renew_interval until ctx is done. Only
// a lease another instance really holds (a newer epoch in observer_epochs) is
// reported on lost, as checkpoint.ErrFenced. Renewals that fail because PostgreSQL
// cannot be reached, restarts or is locked are retried for as long as it takes: the
// instance is not ready meanwhile once its lease has expired, and either renews it
// when PostgreSQL answers again (nobody took it) or learns then that it was fenced.
func (s *Service) renewLease(ctx context.Context, cps *checkpoint.Store, lost chan<- error) {
	cfg := s.cfg.Failover
	t := time.NewTicker(cfg.RenewInterval)
	defer t.Stop()
	var failingSince time.Time
	warnedExpired := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		rctx, cancel := context.WithTimeout(ctx, max(cfg.RenewInterval, 5*time.Second))
		err := cps.RenewLease(rctx, cfg.LeaseDuration)
		cancel()
		switch {
		case err == nil:
			if !failingSince.IsZero() {
				s.log.Info().Dur("failed_for", time.Since(failingSince)).Msg("the slot's lease is renewed again")
			}
			failingSince, warnedExpired = time.Time{}, false
		case errors.Is(err, checkpoint.ErrFenced):
			lost <- fmt.Errorf("another instance took the slot's lease: %w", err)
			return
		case ctx.Err() != nil:
			return
		default:
			if s.built.Load() {
				s.sess.NoteServerError(err)
			}
			if failingSince.IsZero() {
				failingSince = time.Now()
				s.log.Warn().Err(err).Msg("lease renewal failed; will retry")
			}
			if exp := cps.LeaseExpiry(); !warnedExpired && time.Now().After(exp) {
				warnedExpired = true
				s.log.Warn().Err(err).Time("lease_expired", exp).
					Msg("the slot's lease expired while it could not be renewed: this instance keeps going and renews it once PostgreSQL answers; if another instance took it meanwhile, this one stops (exit code 5)")
			}
		}
	}
}
