package cdc

import (
	"context"
	"time"
)

// HeartbeatPrefix is the prefix of the logical decoding messages the service emits as
// heartbeats; the session acknowledges them itself and never hands them on.
const HeartbeatPrefix = "fraiseql-observers.heartbeat"

// Heartbeat emits a non-transactional logical decoding message every interval until
// ctx is done, so that the slot has something of this database to confirm even when
// the published tables are quiet (source.heartbeat_interval). It runs on Options.DB,
// holding a connection only for the moment of each message. Failures are logged and
// retried at the next tick.
func (s *Session) Heartbeat(ctx context.Context, interval time.Duration) error {
	if interval <= 0 {
		return nil
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		qctx, cancel := context.WithTimeout(ctx, interval)
		_, err := s.opts.DB.Exec(qctx, `SELECT pg_logical_emit_message(false, $1, '')`, HeartbeatPrefix)
		cancel()
		if err != nil && ctx.Err() == nil {
			s.log.Warn().Err(err).Msg("heartbeat failed; will retry")
		}
	}
}
