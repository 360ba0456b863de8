package service

import (
	"context"
	"errors"

	"github.com/fraiseql/fraiseql-observers/cdc"
	"github.com/fraiseql/fraiseql-observers/internal/backoff"
)

// ErrStoppedWaitingForDB ends a start that was stopped while PostgreSQL could not be
// reached, or while the start was reading or preparing something in it.
var ErrStoppedWaitingForDB = errors.New("stopped while waiting for PostgreSQL")

// waitForDatabase returns once PostgreSQL answers (whileAway). Anything else it
// answers (a refused login, a missing database) is left for CheckServer to report
// with its exit code.
func (s *Service) waitForDatabase(ctx context.Context) error {
	return s.whileAway(ctx, func(ctx context.Context) error {
		if err := s.pool.Ping(ctx); cdc.DatabaseAway(err) {
			return err
		}
		return nil
	})
}

// whileAway runs step, a step of the start that reads or prepares something in
// PostgreSQL, until PostgreSQL answers it. A database that is away (cdc.DatabaseAway:
// refused or timed-out connections, a server starting up, shutting down or
// restarting) is a reason to wait and try again with backoff (source.reconnect),
// logging each attempt, never to exit: the instance is not ready meanwhile. What
// PostgreSQL answers, an error among it, is step's to report; a ctx that ends first
// returns ErrStoppedWaitingForDB.
func (s *Service) whileAway(ctx context.Context, step func(context.Context) error) error {
	rc := s.cfg.Source.Reconnect
	for attempt := 1; ; attempt++ {
		err := step(ctx)
		if err != nil && ctx.Err() != nil {
			return ErrStoppedWaitingForDB
		}
		if err == nil || !cdc.DatabaseAway(err) {
			if attempt > 1 {
				s.waitingFor.Store(nil)
				s.log.Info().Int("attempts", attempt).Msg("PostgreSQL answers: starting")
			}
			return err
		}
		why := "waiting for PostgreSQL, which cannot be reached: " + err.Error()
		s.waitingFor.Store(&why)
		d := backoff.Exponential(attempt, rc.InitialDelay, rc.MaxDelay)
		s.log.Warn().Err(err).Int("attempt", attempt).Dur("retry_in", d).
			Msg("PostgreSQL cannot be reached; waiting for it (source.reconnect)")
		if backoff.Sleep(ctx, d) != nil {
			return ErrStoppedWaitingForDB
		}
	}
}
