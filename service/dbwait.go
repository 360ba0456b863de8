package service

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/fraiseql/fraiseql-observers/internal/backoff"
)

// ErrStoppedWaitingForDB ends a start that was stopped while PostgreSQL could not be
// reached yet.
var ErrStoppedWaitingForDB = errors.New("stopped while waiting for PostgreSQL")

// waitForDatabase returns once PostgreSQL answers. A database that is away (refused or
// timed-out connections, a server starting up or shutting down) is a reason to wait
// and try again with backoff (source.reconnect), logging each attempt, never to exit;
// anything else it answers (a refused login, a missing database) is returned for the
// preflight to report.
func (s *Service) waitForDatabase(ctx context.Context) error {
	rc := s.cfg.Source.Reconnect
	for attempt := 1; ; attempt++ {
		err := s.pool.Ping(ctx)
		if err == nil {
			if attempt > 1 {
				s.log.Info().Int("attempts", attempt).Msg("PostgreSQL answers: starting")
			}
			return nil
		}
		if ctx.Err() != nil {
			return ErrStoppedWaitingForDB
		}
		if !databaseAway(err) {
			return nil // CheckServer reports it with its exit code
		}
		d := backoff.Exponential(attempt, rc.InitialDelay, rc.MaxDelay)
		s.log.Warn().Err(err).Int("attempt", attempt).Dur("retry_in", d).
			Msg("PostgreSQL cannot be reached; waiting for it (source.reconnect)")
		if backoff.Sleep(ctx, d) != nil {
			return ErrStoppedWaitingForDB
		}
	}
}

// databaseAway reports whether err shows PostgreSQL out of reach for now rather than
// refusing us: no connection could be made (refused, unreachable, timed out, a name
// that does not resolve yet, a connection closed before the start-up), or the server is starting, shutting down, out of
// connection slots or dropped the connection (SQLSTATE classes 57P, 08 and 53).
// Authentication, a missing database or TLS verification failures are not.
func databaseAway(err error) bool {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return strings.HasPrefix(pgErr.Code, "57P") || strings.HasPrefix(pgErr.Code, "08") || strings.HasPrefix(pgErr.Code, "53")
	}
	var netErr net.Error
	var opErr *net.OpError
	var dnsErr *net.DNSError
	if errors.As(err, &opErr) || errors.As(err, &dnsErr) || (errors.As(err, &netErr) && netErr.Timeout()) {
		return true
	}
	return pgconn.Timeout(err) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
}
