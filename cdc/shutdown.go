package cdc

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// A PostgreSQL shutdown in fast or smart mode waits for every walsender to see its
// client confirm everything it was sent, up to the shutdown checkpoint. The session
// confirms only what is durably settled (and holds back a replay window), so it cannot
// always give that confirmation: it notices the shutdown and ends the replication
// connection itself, then reconnects with backoff once the server is back. It notices
//
//   - on the replication connection: a walsender waiting to stop asks for a reply again
//     as soon as it gets one (a normal walsender asks once per wal_sender_timeout/2);
//   - on its other connections: SQLSTATE 57P01 (admin_shutdown), 57P02
//     (crash_shutdown) or 57P03 (cannot_connect_now). In smart mode existing sessions
//     keep working and only new ones are refused, so while it streams the session opens
//     a short connection every ShutdownProbeInterval to find out.

// ServerShuttingDown reports whether err shows that the server is shutting down,
// restarting or not yet accepting connections: SQLSTATE 57P01 admin_shutdown,
// 57P02 crash_shutdown or 57P03 cannot_connect_now. Such an error is a reason to
// pause and reconnect, never to stop.
func ServerShuttingDown(err error) bool {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return false
	}
	switch pgErr.Code {
	case "57P01", "57P02", "57P03":
		return true
	}
	return false
}

// DatabaseAway reports whether err shows PostgreSQL out of reach for now rather than
// refusing us: no connection could be made (refused, unreachable, timed out, a name
// that does not resolve yet, a connection closed before the start-up), or the server
// is starting, shutting down, out of connection slots or dropped the connection
// (SQLSTATE classes 57P, 08 and 53). Authentication, a missing database or TLS
// verification failures are not. It looks through every wrapper, a *PreflightError's
// among them: what decides is the cause. Such an error is a reason to wait and try
// again with backoff, at the start as while streaming, never to stop.
func DatabaseAway(err error) bool {
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

// ServerShutdownError ends a replication connection that the session left because the
// server is shutting down; the session reconnects with backoff.
type ServerShutdownError struct {
	// Why says how the session noticed.
	Why string
	Err error
}

func (e *ServerShutdownError) Error() string {
	s := "PostgreSQL is shutting down (" + e.Why + "): ended the replication connection so that the server can stop"
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

func (e *ServerShutdownError) Unwrap() error { return e.Err }

// NoteServerError tells the session about an error met on another connection to the
// same server (checkpoints, lease, registry). When it shows the server shutting down
// (ServerShuttingDown), the session leaves its replication connection at once so that
// the shutdown is not held up, and it returns true.
func (s *Session) NoteServerError(err error) bool {
	if !ServerShuttingDown(err) {
		return false
	}
	s.serverLeaving(&ServerShutdownError{Why: "seen on another connection", Err: err})
	return true
}

// serverLeaving asks the stream to end and tells the owner of the other connections,
// DB's among them (Options.OnServerShutdown).
func (s *Session) serverLeaving(err *ServerShutdownError) {
	select {
	case s.leave <- err:
	default: // already asked
	}
	if s.opts.OnServerShutdown != nil {
		s.opts.OnServerShutdown()
	}
}

// quickReply is how soon after our reply a new request for one counts as the
// walsender waiting to stop; quickReplies such requests in a row end the connection.
const (
	quickReply   = 50 * time.Millisecond
	quickReplies = 3
)

// probeShutdown opens a short plain connection every ShutdownProbeInterval until ctx
// is done, and reports a server that refuses it because it is shutting down.
//
// It dials itself rather than going through Options.DB, on purpose: only a new
// session learns of a smart shutdown (existing ones keep working), and a pool would
// hand out a connection it already holds, so the probe would never see the refusal.
func (s *Session) probeShutdown(ctx context.Context) {
	if s.opts.ShutdownProbeInterval <= 0 {
		return
	}
	t := time.NewTicker(s.opts.ShutdownProbeInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		conn, err := pgconn.ConnectConfig(cctx, s.opts.ConnConfig.Config.Copy())
		cancel()
		if err == nil {
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			conn.Close(cctx)
			cancel()
			continue
		}
		if ctx.Err() == nil && ServerShuttingDown(err) {
			s.serverLeaving(&ServerShutdownError{Why: "it refuses new connections", Err: err})
			return
		}
	}
}
