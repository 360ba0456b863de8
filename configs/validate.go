package configs

import (
	"net"
	"slices"
	"strconv"
	"time"

	"github.com/fraiseql/fraiseql-observers/decoder"
)

// maxConcurrency is the most workers an action may have.
const maxConcurrency = 1024

var (
	logLevels  = []string{"trace", "debug", "info", "warn", "error"}
	logFormats = []string{"json", "console"}
)

// validate checks the values decoded into l.cfg and how settings combine.
// Observers were checked while decoding.
func (l *loader) validate() {
	c := l.cfg
	sec := func(name string) Pos {
		if p, ok := l.sections[name]; ok {
			return p
		}
		return l.start
	}
	at := func(ptr any, section string) Pos { return l.d.where(ptr, sec(section)) }

	if err := checkName(c.ListenerID, 63); err != nil {
		l.errorf(at(&c.ListenerID, "listener_id"), "listener_id: invalid name %s: %v", l.quote(&c.ListenerID), err)
	}
	l.validateSource()
	if len(c.Observers) == 0 && len(l.errs.List) == 0 {
		l.warnf(sec("observers"), "no observers: changes will be read and acknowledged without running any action")
	}
	if err := checkIdentifier(c.State.Schema); err != nil {
		l.errorf(at(&c.State.Schema, "state"), "state.schema: invalid schema name %s: %v", l.quote(&c.State.Schema), err)
	}
	l.positive(&c.Checkpoints.Interval, "checkpoints.interval", sec("checkpoints"))
	if n := c.ConcurrentExecution.MaxConcurrency; n < 1 || n > maxConcurrency {
		l.errorf(at(&c.ConcurrentExecution.MaxConcurrency, "concurrent_execution"), "concurrent_execution.max_concurrency: must be between 1 and %d, got %d", maxConcurrency, n)
	}
	if n := c.Deduplication.CacheEntries; n < 1 {
		l.errorf(at(&c.Deduplication.CacheEntries, "deduplication"), "deduplication.cache_entries: must be at least 1, got %d", n)
	}
	if c.Caching.MaxBytes <= 0 {
		l.errorf(at(&c.Caching.MaxBytes, "caching"), "caching.max_bytes: must be positive (disable caching with enabled: false), got %d", c.Caching.MaxBytes)
	}
	if c.DLQ.MaxDLQSize < 0 {
		l.errorf(at(&c.DLQ.MaxDLQSize, "dlq"), "dlq.max_dlq_size: must not be negative (0 is unbounded), got %d", c.DLQ.MaxDLQSize)
	}

	p := &c.Pipeline
	if p.MaxInFlightBytes <= 0 {
		l.errorf(at(&p.MaxInFlightBytes, "pipeline"), "pipeline.max_in_flight_bytes: must be positive, got %d", p.MaxInFlightBytes)
	} else if c.Source.MaxEventBytes > p.MaxInFlightBytes && (l.d.written(&p.MaxInFlightBytes) || l.d.written(&c.Source.MaxEventBytes)) {
		// The defaults are such a pair on purpose (a 16 MiB budget keeps the process
		// small; a rare larger row is admitted alone): only a pair the operator wrote
		// is worth a warning.
		l.warnf(at(&p.MaxInFlightBytes, "pipeline"), "pipeline.max_in_flight_bytes (%s) is smaller than source.max_event_bytes (%s): an event that large runs alone", p.MaxInFlightBytes, c.Source.MaxEventBytes)
	}
	if p.BatchSize < 1 || p.BatchSize > 100_000 {
		l.errorf(at(&p.BatchSize, "pipeline"), "pipeline.batch_size: must be between 1 and 100000, got %d", p.BatchSize)
	}
	l.positive(&p.ShutdownTimeout, "pipeline.shutdown_timeout", sec("pipeline"))

	ev := &c.Evaluation
	if ev.MaxSteps < 1 {
		l.errorf(at(&ev.MaxSteps, "evaluation"), "evaluation.max_steps: must be at least 1, got %d", ev.MaxSteps)
	}
	if l.positive(&ev.Timeout, "evaluation.timeout", sec("evaluation")) && ev.Timeout > time.Minute {
		l.errorf(at(&ev.Timeout, "evaluation"), "evaluation.timeout: must be at most 1m (one evaluation holds back the routing of later events), got %s", ev.Timeout)
	}
	if ev.MaxMemoryBytes <= 0 {
		l.errorf(at(&ev.MaxMemoryBytes, "evaluation"), "evaluation.max_memory_bytes: must be positive, got %d", ev.MaxMemoryBytes)
	}
	if ev.MaxRenderedBytes <= 0 {
		l.errorf(at(&ev.MaxRenderedBytes, "evaluation"), "evaluation.max_rendered_bytes: must be positive, got %d", ev.MaxRenderedBytes)
	}

	l.validateAdmin(sec("admin"))

	f := &c.Failover
	if l.positive(&f.LeaseDuration, "failover.lease_duration", sec("failover")) &&
		l.positive(&f.RenewInterval, "failover.renew_interval", sec("failover")) &&
		f.RenewInterval >= f.LeaseDuration {
		l.errorf(at(&f.RenewInterval, "failover"), "failover.renew_interval: must be shorter than lease_duration (%s), got %s", f.LeaseDuration, f.RenewInterval)
	}
	if f.Enabled && !l.d.has(&c.ListenerID) {
		l.warnf(sec("failover"), "failover is enabled but listener_id is not set: give every instance its own listener_id")
	}
	if f.Enabled && !c.Checkpoints.Enabled {
		l.errorf(at(&f.Enabled, "failover"), "failover.enabled: needs checkpoints.enabled: the lease lives with the checkpoints, and a standby resumes from them")
	}

	if !c.ReplayWindow.IsZero() && !c.Checkpoints.Enabled {
		l.errorf(at(&c.ReplayWindow, "replay_window"), "replay_window: needs checkpoints.enabled: without checkpoints every restart would deliver the whole window again")
	}

	l.validateSnapshot(sec("snapshot"))

	if !slices.Contains(logLevels, c.Logging.Level) {
		l.errorf(at(&c.Logging.Level, "logging"), "logging.level: unknown level %s: expected %s%s", l.quote(&c.Logging.Level), quoteList(logLevels), DidYouMean(c.Logging.Level, logLevels))
	}
	if !slices.Contains(logFormats, c.Logging.Format) {
		l.errorf(at(&c.Logging.Format, "logging"), "logging.format: unknown format %s: expected %s%s", l.quote(&c.Logging.Format), quoteList(logFormats), DidYouMean(c.Logging.Format, logFormats))
	}
}

var snapshotModes = []string{SnapshotNever, SnapshotInitial}

// validateSnapshot checks the snapshot section.
func (l *loader) validateSnapshot(section Pos) {
	s := &l.cfg.Snapshot
	if !slices.Contains(snapshotModes, s.Mode) {
		l.errorf(l.d.where(&s.Mode, section), "snapshot.mode: unknown mode %s: expected %s%s", l.quote(&s.Mode), quoteList(snapshotModes), DidYouMean(s.Mode, snapshotModes))
	}
	if s.ChunkSize < 1 || s.ChunkSize > 1_000_000 {
		l.errorf(l.d.where(&s.ChunkSize, section), "snapshot.chunk_size: must be between 1 and 1000000, got %d", s.ChunkSize)
	}
	if s.RowsPerSecond < 0 {
		l.errorf(l.d.where(&s.RowsPerSecond, section), "snapshot.rows_per_second: must not be negative (0 is no limit), got %v", s.RowsPerSecond)
	}
	if s.Mode != SnapshotInitial {
		return
	}
	if !l.cfg.Checkpoints.Enabled {
		l.errorf(l.d.where(&s.Mode, section), "snapshot.mode: initial needs checkpoints.enabled: snapshot progress is stored with the checkpoints")
	}
	reads := false
	for _, o := range l.cfg.Observers {
		reads = reads || slices.Contains(o.Ops, decoder.OpRead)
	}
	if !reads && len(l.cfg.Observers) > 0 {
		l.errorf(l.d.where(&s.Mode, section), "snapshot.mode: initial backfills the tables of observers whose event_type lists READ, and no observer does: add READ to the observers that should get the rows tables already hold")
	}
}

// validateAdmin checks the listen address and warns about an open endpoint.
func (l *loader) validateAdmin(section Pos) {
	a := &l.cfg.Admin
	if a.Listen == "" {
		if a.Token.IsSet() {
			l.warnf(l.d.where(&a.Token, section), "admin.token_env: ignored because admin.listen is empty (the endpoint is off)")
		}
		if a.TLSCertFile != "" {
			l.warnf(l.d.where(&a.TLSCertFile, section), "admin.tls_cert_file: ignored because admin.listen is empty (the endpoint is off)")
		}
		return
	}
	pos := l.d.where(&a.Listen, section)
	host, port, err := net.SplitHostPort(a.Listen)
	if err != nil {
		l.errorf(pos, "admin.listen: invalid address %s: expected host:port such as \"127.0.0.1:9187\" (\"\" disables the endpoint)", l.quote(&a.Listen))
		return
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		l.errorf(pos, "admin.listen: invalid port in %s: expected a number from 0 to 65535", l.quote(&a.Listen))
		return
	}
	if (a.TLSCertFile == "") != (a.TLSKeyFile == "") {
		missing, given := "tls_key_file", &a.TLSCertFile
		if a.TLSCertFile == "" {
			missing, given = "tls_cert_file", &a.TLSKeyFile
		}
		l.errorf(l.d.where(given, section), "admin.%s: required together with the other TLS file: HTTPS needs a certificate and its key", missing)
	}
	if !isLoopback(host) && !a.Token.IsSet() {
		l.warnf(pos, "admin.listen: %s is reachable from other hosts and admin.token_env is not set: anyone who can connect can read metrics and retry or remove DLQ items", l.quote(&a.Listen))
	}
}

// isLoopback reports whether host only accepts local connections.
func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// positive reports an error unless *d > 0.
func (l *loader) positive(d *time.Duration, path string, section Pos) bool {
	if *d > 0 {
		return true
	}
	l.errorf(l.d.where(d, section), "%s: must be positive, got %s", path, *d)
	return false
}

// notNegative reports an error if *d < 0.
func (l *loader) notNegative(d *time.Duration, path string, section Pos) bool {
	if *d >= 0 {
		return true
	}
	l.errorf(l.d.where(d, section), "%s: must not be negative (0 is off), got %s", path, *d)
	return false
}
