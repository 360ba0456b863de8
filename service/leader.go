package service

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/rs/zerolog"

	"github.com/fraiseql/fraiseql-observers/cdc"
	"github.com/fraiseql/fraiseql-observers/checkpoint"
	"github.com/fraiseql/fraiseql-observers/configs"
	"github.com/fraiseql/fraiseql-observers/registry"
)

// ErrStoppedAsStandby ends a standby that was stopped before it took the lease.
var ErrStoppedAsStandby = errors.New("stopped while standing by")

// leaseSeen is the slot's lease as a standby last read it.
type leaseSeen struct {
	ListenerID string
	Epoch      int64
	expires    time.Time // by this host's clock
}

// election is the slot's leader election, in one place: who may stream the slot and
// write its checkpoints. Its parts are
//
//   - the fencing epoch of observer_epochs: taken with the lease (failover), or when
//     the session first streams the slot (claim) without failover; checkpoint writes
//     carry it, and a newer epoch fences them (checkpoint.ErrFenced). The row's SQL is
//     checkpoint.Store's, because the same row fences the checkpoint writes;
//   - the lease (failover.enabled): an expiry on that row, taken by campaign, renewed
//     by renew, handed over at a clean stop by release, with the takeover of the slot
//     from a previous leader whose lease expired;
//   - the listener heartbeat (observer_listeners): every instance's role and state,
//     a standby's from the start, a leader's once it holds the slot;
//   - the role as this instance knows it: leading or standing by, and the holder of
//     the lease as last read.
type election struct {
	failover   configs.Failover
	slot       string
	listenerID string
	app        string // application_name of our replication connections
	pool       *pgxpool.Pool
	log        zerolog.Logger

	lease   *checkpoint.Store // the lease we hold (failover), else nil; set before leading
	leading atomic.Bool
	epoch   atomic.Int64
	holder  atomic.Pointer[leaseSeen] // standby: the lease as last read

	hb      *registry.Heartbeat // nil until the operator surface starts
	mu      sync.Mutex
	beating bool // guarded by mu: the heartbeat runs (and may record a stop)
}

// campaign blocks until this instance holds the slot's lease (failover.enabled),
// recording itself as a standby in the listener registry meanwhile (goHeartbeat runs
// the heartbeat). Then takeOverSlot ends the walsender of a previous leader that still
// holds the slot (a crashed or paused process whose lease expired).
func (e *election) campaign(ctx context.Context, cps *checkpoint.Store, goHeartbeat func(func(context.Context) error)) error {
	e.startHeartbeat(goHeartbeat)
	var last checkpoint.Holder
	failing := false
	for {
		ok, h, err := cps.TryLease(ctx, e.failover.LeaseDuration)
		switch {
		case err != nil:
			if ctx.Err() != nil {
				return ErrStoppedAsStandby
			}
			if !failing {
				e.log.Warn().Err(err).Msg("cannot read the slot's lease; will retry")
				failing = true
			}
		case ok:
			e.epoch.Store(h.Epoch)
			e.log.Info().Str("slot", e.slot).Int64("epoch", h.Epoch).Msg("took the slot's lease: leading")
			e.lease = cps
			return nil
		default:
			failing = false
			e.holder.Store(&leaseSeen{ListenerID: h.ListenerID, Epoch: h.Epoch, expires: time.Now().Add(h.Remaining)})
			if h.ListenerID != last.ListenerID || h.Epoch != last.Epoch {
				last = h
				e.log.Info().Str("slot", e.slot).Str("leader", h.ListenerID).Int64("epoch", h.Epoch).
					Time("lease_expires", h.ExpiresAt).Msg("standing by: another instance holds the slot's lease")
			}
		}
		select {
		case <-ctx.Done():
			return ErrStoppedAsStandby
		case <-time.After(e.failover.RenewInterval):
		}
	}
}

// takeOverSlot, once the lease is ours, waits until the slot is free, ending the
// walsender of a previous leader of ours (recognised by its application name) that
// still holds it; a foreign holder is never terminated.
func (e *election) takeOverSlot(ctx context.Context) error {
	deadline := time.Now().Add(e.failover.LeaseDuration + time.Minute)
	for {
		slot, err := cdc.ReadSlot(ctx, e.pool, e.slot)
		if err != nil {
			return fmt.Errorf("read slot %s: %w", e.slot, err)
		}
		if !slot.Exists || !slot.Active {
			return nil
		}
		var holderApp string
		err = e.pool.QueryRow(ctx, `SELECT coalesce((SELECT application_name FROM pg_stat_replication WHERE pid = $1), '')`, slot.ActivePID).Scan(&holderApp)
		if err != nil {
			return fmt.Errorf("read the slot's holder: %w", err)
		}
		if holderApp != e.app {
			return &cdc.PreflightError{Check: "slot", Msg: fmt.Sprintf("slot %q is held by PID %d (application_name %q), not by an instance of ours",
				e.slot, slot.ActivePID, holderApp), Hint: "stop the other consumer; only one reader per slot is possible"}
		}
		if _, err := e.pool.Exec(ctx, `SELECT pg_terminate_backend($1)`, slot.ActivePID); err != nil {
			return fmt.Errorf("end the previous leader's walsender (PID %d): %w", slot.ActivePID, err)
		}
		e.log.Warn().Int32("walsender_pid", slot.ActivePID).Msg("ended the replication session of the previous leader, whose lease expired")
		if time.Now().After(deadline) {
			return fmt.Errorf("slot %s is still in use after ending its walsender", e.slot)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// takeEpoch takes the next fencing epoch without failover, when the session first
// streams the slot.
func (e *election) takeEpoch(ctx context.Context, cps *checkpoint.Store) error {
	epoch, err := cps.AcquireEpoch(ctx)
	if err != nil {
		return err
	}
	e.epoch.Store(epoch)
	return nil
}

// renew renews the lease every failover.renew_interval until ctx is done. Only a
// lease another instance really holds (a newer epoch in observer_epochs) is reported
// on lost, as checkpoint.ErrFenced. Renewals that fail because PostgreSQL cannot be
// reached, restarts or is locked are retried for as long as it takes (each failure is
// passed to failed): the instance is not ready meanwhile once its lease has expired,
// and either renews it when PostgreSQL answers again (nobody took it) or learns then
// that it was fenced.
func (e *election) renew(ctx context.Context, lost chan<- error, failed func(error)) {
	t := time.NewTicker(e.failover.RenewInterval)
	defer t.Stop()
	var failingSince time.Time
	warnedExpired := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		rctx, cancel := context.WithTimeout(ctx, max(e.failover.RenewInterval, 5*time.Second))
		err := e.lease.RenewLease(rctx, e.failover.LeaseDuration)
		cancel()
		switch {
		case err == nil:
			if !failingSince.IsZero() {
				e.log.Info().Dur("failed_for", time.Since(failingSince)).Msg("the slot's lease is renewed again")
			}
			failingSince, warnedExpired = time.Time{}, false
		case errors.Is(err, checkpoint.ErrFenced):
			lost <- fmt.Errorf("another instance took the slot's lease: %w", err)
			return
		case ctx.Err() != nil:
			return
		default:
			failed(err)
			if failingSince.IsZero() {
				failingSince = time.Now()
				e.log.Warn().Err(err).Msg("lease renewal failed; will retry")
			}
			if exp := e.lease.LeaseExpiry(); !warnedExpired && time.Now().After(exp) {
				warnedExpired = true
				e.log.Warn().Err(err).Time("lease_expired", exp).
					Msg("the slot's lease expired while it could not be renewed: this instance keeps going and renews it once PostgreSQL answers; if another instance took it meanwhile, this one steps down and stands by again")
			}
		}
	}
}

// release hands the lease over at once at a clean stop, instead of after it expires.
func (e *election) release(ctx context.Context) {
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := e.lease.ReleaseLease(rctx); err != nil {
		e.log.Warn().Err(err).Msg("could not release the slot's lease; a standby takes over when it expires")
	}
}

// leaseExpired returns when our lease expired, if it has (by this host's clock).
func (e *election) leaseExpired() (time.Time, bool) {
	if e.lease == nil {
		return time.Time{}, false
	}
	exp := e.lease.LeaseExpiry()
	return exp, !exp.IsZero() && time.Now().After(exp)
}

// standbyReason says why a standby is not ready.
func (e *election) standbyReason() error {
	if h := e.holder.Load(); h != nil && h.ListenerID != "" {
		return fmt.Errorf("standby: the slot's lease is held by %s (epoch %d); this instance takes over when it expires", h.ListenerID, h.Epoch)
	}
	return errors.New("standby: waiting for the slot's lease")
}

// state returns the epoch and holder of the slot's lease as this instance knows it,
// and when it expires by this host's clock (zero when unknown).
func (e *election) state() (epoch int64, holder string, expires time.Time) {
	if e.leading.Load() && e.lease != nil {
		return e.lease.Epoch(), e.listenerID, e.lease.LeaseExpiry()
	}
	if h := e.holder.Load(); h != nil {
		return h.Epoch, h.ListenerID, h.expires
	}
	return 0, "", time.Time{}
}

// role is "leader" or "standby".
func (e *election) role() string {
	if e.leading.Load() {
		return "leader"
	}
	return "standby"
}

// startHeartbeat starts recording the instance in the registry (through goRun, with
// the operator surface's lifetime): a standby from the start, a leader once it holds
// the slot (a second instance that fails preflight never overwrites the record of the
// one that runs).
func (e *election) startHeartbeat(goRun func(func(context.Context) error)) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.beating || e.hb == nil {
		return
	}
	e.beating = true
	goRun(e.hb.Run)
}

// beat writes the registry record now, if the heartbeat runs.
func (e *election) beat(ctx context.Context) {
	e.mu.Lock()
	beating := e.beating
	e.mu.Unlock()
	if !beating {
		return
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := e.hb.Beat(cctx); err != nil {
		e.log.Warn().Err(err).Msg("listener heartbeat failed")
	}
}
