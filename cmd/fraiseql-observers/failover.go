package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/fraiseql/fraiseql-observers/cdc"
	"github.com/fraiseql/fraiseql-observers/checkpoint"
	"github.com/fraiseql/fraiseql-observers/registry"
)

// errStoppedAsStandby ends a standby that was stopped before it took the lease.
var errStoppedAsStandby = errors.New("stopped while standing by")

// waitForLease blocks until this instance holds the slot's lease (failover.enabled),
// recording itself as a standby in the listener registry meanwhile. Once it holds the
// lease it ends the walsender of a previous leader that still holds the slot (a crashed
// or paused process whose lease expired).
func (s *service) waitForLease(ctx context.Context, cps *checkpoint.Store) error {
	cfg := s.cfg
	reg := registry.NewStore(s.pool, cfg.State.Schema, cfg.Source.Slot)
	if err := reg.Migrate(ctx); err != nil {
		return preflightDB(err)
	}
	host, _ := os.Hostname()
	started := time.Now()
	var last checkpoint.Holder
	for {
		ok, h, err := cps.TryLease(ctx, cfg.Failover.LeaseDuration)
		switch {
		case err != nil:
			if ctx.Err() != nil {
				return errStoppedAsStandby
			}
			s.log.Warn().Err(err).Msg("cannot read the slot's lease; will retry")
		case ok:
			s.ops.epoch = h.Epoch
			s.log.Info().Str("slot", cfg.Source.Slot).Int64("epoch", h.Epoch).Msg("took the slot's lease: leading")
			return s.takeOverSlot(ctx)
		case h.ListenerID != last.ListenerID || h.Epoch != last.Epoch:
			last = h
			s.log.Info().Str("slot", cfg.Source.Slot).Str("leader", h.ListenerID).Int64("epoch", h.Epoch).
				Time("lease_expires", h.ExpiresAt).Msg("standing by: another instance holds the slot's lease")
		}
		rec := registry.Record{ListenerID: cfg.ListenerID, Host: host, PID: os.Getpid(), Version: buildVersion(),
			State: registry.StateStandby, StartedAt: started, Interval: cfg.Failover.RenewInterval}
		if err := reg.Upsert(ctx, rec); err != nil && ctx.Err() == nil {
			s.log.Warn().Err(err).Msg("standby heartbeat failed")
		}
		select {
		case <-ctx.Done():
			return errStoppedAsStandby
		case <-time.After(cfg.Failover.RenewInterval):
		}
	}
}

// takeOverSlot waits until the slot is free, ending the walsender of a previous leader
// of ours (recognised by its application name) that still holds it; a foreign holder
// is never terminated.
func (s *service) takeOverSlot(ctx context.Context) error {
	cfg := s.cfg
	app := "fraiseql-observers"
	if cc, err := connConfig(cfg); err == nil && cc.RuntimeParams["application_name"] != "" {
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

// renewLease renews the lease every failover.renew_interval until ctx is done. It
// reports checkpoint.ErrFenced on lost, when another instance took the lease, or when
// renewals kept failing for a whole lease duration (another instance may hold it now).
func (s *service) renewLease(ctx context.Context, cps *checkpoint.Store, lost chan<- error) {
	cfg := s.cfg.Failover
	t := time.NewTicker(cfg.RenewInterval)
	defer t.Stop()
	lastOK := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		err := cps.RenewLease(ctx, cfg.LeaseDuration)
		switch {
		case err == nil:
			lastOK = time.Now()
		case errors.Is(err, checkpoint.ErrFenced):
			lost <- fmt.Errorf("another instance took the slot's lease: %w", err)
			return
		case ctx.Err() != nil:
			return
		default:
			s.log.Warn().Err(err).Msg("lease renewal failed; will retry")
			if time.Since(lastOK) > cfg.LeaseDuration {
				lost <- fmt.Errorf("the lease could not be renewed for %v: %w", cfg.LeaseDuration, checkpoint.ErrFenced)
				return
			}
		}
	}
}
