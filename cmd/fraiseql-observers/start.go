package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime/debug"
	"time"

	"github.com/rs/zerolog"
	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/fraiseql/fraiseql-observers/checkpoint"
	"github.com/fraiseql/fraiseql-observers/configs"
	"github.com/fraiseql/fraiseql-observers/decoder"
	"github.com/fraiseql/fraiseql-observers/lsn"
	"github.com/fraiseql/fraiseql-observers/service"
	"github.com/fraiseql/fraiseql-observers/transport"
)

type startFlags struct {
	g         *globals
	startLSN  string
	logFormat string
	logLevel  string
	role      string
}

func newStartCmd(g *globals) *cobra.Command {
	f := startFlags{g: g}
	c := &cobra.Command{
		Use:   "start --config FILE",
		Short: "Stream changes from the slot and run the observers",
		Long: `Start streaming from the configured slot and deliver every matching change to the
observers' actions until SIGINT or SIGTERM. On a signal the service stops reading,
drains what is in flight (pipeline.shutdown_timeout), writes its checkpoints and
confirms to PostgreSQL only what was delivered.

--start-lsn X/Y starts every action at X/Y instead of its checkpoint: a position later
than the checkpoint skips the changes before it; an earlier one replays the changes from
it (delivered again with their original ids), as far back as the slot's
confirmed_flush_lsn — an older one is refused (exit code 2).

When PostgreSQL stops or restarts (any shutdown mode), is locked or cannot be reached,
the service pauses and reconnects with backoff (source.reconnect); it ends its
replication connection itself so that a shutdown is never held up. It exits only when
an operator must decide: see the exit codes in docs/cli.md.

--role splits the work with transport.type nats (docs/scaling.md): reader streams the
slot and publishes every event to the JetStream stream (the original's run_bridge),
executor runs the actions for the partitions it owns and never opens the slot
(run_executors), all (the default) does both in one process. With the in_process
transport only all exists.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runStart(cmd.Context(), f) },
	}
	c.Flags().StringVar(&f.startLSN, "start-lsn", "", "start every action at this LSN (X/Y): later than the checkpoint skips the changes before it; earlier delivers the changes from it again (a replay, as far back as the slot's confirmed_flush_lsn)")
	c.Flags().StringVar(&f.logFormat, "log-format", "", "log format: json (default) or console; overrides logging.format")
	c.Flags().StringVar(&f.logLevel, "log-level", "", "log level: trace, debug, info, warn or error; overrides logging.level")
	c.Flags().StringVar(&f.role, "role", service.RoleAll, "what this process runs with transport.type nats: reader (streams the slot into the stream), executor (runs the actions) or all")
	return c
}

func runStart(ctx context.Context, f startFlags) error {
	cfg, warnings, err := configs.Load(f.g.config)
	if err != nil {
		return err
	}
	if f.logFormat != "" {
		if f.logFormat != "json" && f.logFormat != "console" {
			return &codeError{code: exitConfig, err: fmt.Errorf("--log-format must be json or console, not %q", f.logFormat)}
		}
		cfg.Logging.Format = f.logFormat
	}
	if f.logLevel != "" {
		cfg.Logging.Level = f.logLevel
	}
	log, err := newLogger(cfg.Logging)
	if err != nil {
		return &codeError{code: exitConfig, err: err}
	}
	for _, w := range warnings {
		log.Warn().Str("where", w.Pos.String()).Msg(w.Msg)
	}
	var startLSN lsn.LSN
	if f.startLSN != "" {
		if startLSN, err = lsn.Parse(f.startLSN); err != nil {
			return &codeError{code: exitConfig, err: fmt.Errorf("--start-lsn: %w", err)}
		}
	}
	log.Info().Str("version", buildVersion()).Str("config", f.g.config).Str("listener_id", cfg.ListenerID).Str("role", f.role).
		Int64("memory_limit", memoryLimit(cfg, f.role)).Msg("starting")
	for {
		svc, err := service.New(ctx, cfg, log, service.Options{Actions: actions{cfg: cfg, log: log}, StartLSN: startLSN, Version: buildVersion(), Role: f.role})
		if errors.Is(err, service.ErrStoppedAsStandby) {
			log.Info().Msg("stopped while standing by")
			return nil
		}
		if errors.Is(err, service.ErrStoppedWaitingForDB) {
			log.Info().Msg("stopped while waiting for PostgreSQL")
			return nil
		}
		if errors.Is(err, service.ErrStoppedWaitingForNATS) {
			log.Info().Msg("stopped while waiting for NATS")
			return nil
		}
		if err != nil {
			return err
		}
		err = svc.Run(ctx)
		if errors.Is(err, checkpoint.ErrFenced) && cfg.Failover.Enabled && ctx.Err() == nil {
			// Another instance of the failover group leads the slot now (this one
			// was paused, cut off or slow past its lease): it drained and released
			// what it held; it stands by again, so the group keeps its standby.
			log.Warn().Err(err).Msg("another instance leads the slot now: standing by again")
			startLSN = 0 // --start-lsn applied to the first run only
			continue
		}
		if err != nil {
			log.Error().Err(err).Msg("stopped with an error")
			return &silentError{err}
		}
		break
	}
	log.Info().Msg("stopped")
	return nil
}

// newLogger builds the root logger: JSON lines on stderr, or a human console format.
func newLogger(c configs.Logging) (zerolog.Logger, error) {
	level, err := zerolog.ParseLevel(c.Level)
	if err != nil || c.Level == "" {
		if c.Level != "" {
			return zerolog.Logger{}, fmt.Errorf("unknown log level %q", c.Level)
		}
		level = zerolog.InfoLevel
	}
	var log zerolog.Logger
	switch c.Format {
	case "console":
		// Colours only on a terminal: a file or a journal gets plain text.
		log = zerolog.New(zerolog.ConsoleWriter{Out: os.Stderr, TimeFormat: time.RFC3339, NoColor: !isTerminal(os.Stderr)})
	case "", "json":
		log = zerolog.New(os.Stderr)
	default:
		return zerolog.Logger{}, errors.New("logging.format must be json or console")
	}
	return log.Level(level).With().Timestamp().Logger(), nil
}

// memoryLimit sets the Go runtime's soft memory limit from the configured budgets,
// unless GOMEMLIMIT is set; it returns the limit. Events in flight are counted twice
// (their decoded form and the garbage the collector has not yet reclaimed), the row
// cache once, and only when an observer fires on UPDATEs or DELETEs (no other event is
// completed from it, so it then stays empty), plus a fixed allowance for everything
// else. The budgets bound the live data; the limit keeps the heap from growing beyond
// them between collections: 48 MiB with the defaults (64 MiB with the row cache).
//
// A process that runs the actions of the nats transport (role executor, or all with
// transport.type nats) holds each event in flight twice more: the JetStream message
// it acknowledges once the event is settled, and the messages pulled ahead of the
// pipeline. Its limit counts the in-flight budget twice more (80 MiB with the
// defaults): under the in-process figure, executors spent most of their CPU in the
// collector (docs/performance.md, transport).
func memoryLimit(cfg *configs.Config, role string) int64 {
	if os.Getenv("GOMEMLIMIT") != "" {
		return debug.SetMemoryLimit(-1)
	}
	limit := 2*int64(cfg.Pipeline.MaxInFlightBytes) + memoryAllowance
	if cfg.Caching.Enabled && needsRowCache(cfg) {
		limit += int64(cfg.Caching.MaxBytes)
	}
	if tc, err := service.TransportConfig(cfg); err == nil && tc.Type == transport.TypeNATS && role != service.RoleReader {
		limit += 2 * int64(cfg.Pipeline.MaxInFlightBytes)
	}
	debug.SetMemoryLimit(limit)
	return limit
}

// memoryAllowance is the part of the soft memory limit that is not events or row images.
const memoryAllowance = 16 << 20

// needsRowCache reports whether an observer fires on UPDATEs or DELETEs.
func needsRowCache(cfg *configs.Config) bool {
	for _, o := range cfg.Observers {
		for _, op := range o.Ops {
			if op == decoder.OpUpdate || op == decoder.OpDelete {
				return true
			}
		}
	}
	return false
}

// isTerminal reports whether f is a terminal: one that answers the terminal
// attributes request (a character device such as /dev/null does not).
func isTerminal(f *os.File) bool {
	rc, err := f.SyscallConn()
	if err != nil {
		return false
	}
	var terr error
	if err := rc.Control(func(fd uintptr) { _, terr = unix.IoctlGetTermios(int(fd), unix.TCGETS) }); err != nil {
		return false
	}
	return terr == nil
}
