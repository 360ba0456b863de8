// Package service is the runtime of fraiseql-observers: built from a loaded
// configuration, it runs the replication session, the pipeline and the sinks, the
// checkpoints and snapshots, the leader election between instances of one slot
// (failover), and the operator surface (admin endpoint, listener heartbeat, slot
// monitor, the /status document), and shuts them down in two tiers. The CLI
// (cmd/fraiseql-observers) turns flags into a configuration, a logger and a Service,
// and the outcome into an exit code.
package service

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/rs/zerolog"

	"github.com/fraiseql/fraiseql-observers/cdc"
	"github.com/fraiseql/fraiseql-observers/checkpoint"
	"github.com/fraiseql/fraiseql-observers/configs"
	"github.com/fraiseql/fraiseql-observers/dlq"
	"github.com/fraiseql/fraiseql-observers/lsn"
	"github.com/fraiseql/fraiseql-observers/pipeline"
	"github.com/fraiseql/fraiseql-observers/registry"
	"github.com/fraiseql/fraiseql-observers/snapshot"
	"github.com/fraiseql/fraiseql-observers/transport"
)

// Options are what New needs besides the configuration and the logger.
type Options struct {
	// Actions builds the executor side: the observers with their sinks.
	Actions Actions
	// StartLSN, when not 0, starts every action there instead of at its checkpoint
	// (start --start-lsn): later skips ahead, earlier replays.
	StartLSN lsn.LSN
	// Version is the build's version, for the listener registry and /status.
	Version string
	// Role is what the instance runs (start --role): RoleAll (""), RoleReader or
	// RoleExecutor; the last two need transport.type nats.
	Role string
}

// Service is the running system: the replication session (the source of events,
// with its checkpoints, snapshots and the slot's leader election) feeding the
// pipeline and the sinks of the observers' actions (the executor side, built by
// Options.Actions), with the operator surface (admin endpoint, listener heartbeat,
// slot monitor). New builds it from a loaded configuration; Run runs it until its
// context ends, then shuts it down in two tiers.
type Service struct {
	cfg    *configs.Config
	opts   Options
	log    zerolog.Logger
	set    *metrics.Set
	pool   *pgxpool.Pool
	wm     *lsn.Watermark[lsn.LSN]
	pipe   *pipeline.Pipeline
	sess   *cdc.Session
	writer *checkpoint.Writer // nil when checkpoints are disabled
	dedup  *pipeline.Dedup
	rows   *pipeline.RowCache // nil when caching is disabled
	cps    *checkpoint.Store  // nil when checkpoints are disabled
	dlq    *dlq.Store
	snaps  *snapshot.Manager // nil when checkpoints are disabled
	// The nats transport (transport.type nats): the configuration, the connection,
	// the reader's publisher (roles reader and all; it takes the pipeline's place
	// behind the session) and the executor (roles executor and all).
	role    string
	tc      transport.Config
	tclient *transport.Client
	pub     *transport.Publisher
	exec    *transport.Executor
	// readerPipe stands for the pipeline in the reader's snapshots (snapshot.Pipeline).
	readerPipe *readerPipeline
	// waitingFor says why the start waits (PostgreSQL or NATS cannot be reached), nil
	// otherwise.
	waitingFor atomic.Pointer[string]
	ops        operator
	// initialSnapshot: snapshot.mode initial and the slot was never streamed; the
	// snapshot is recorded when the slot is claimed.
	initialSnapshot bool

	// elect is the slot's leader election: epoch, lease, heartbeat and role.
	elect election
	// built: pipe, sess, writer and ops.mon are set; other goroutines (the admin
	// endpoint) read them only after seeing it.
	built atomic.Bool
	// claimed is closed once the session holds the slot and the epoch is taken:
	// checkpoints are written from then on.
	claimed   chan struct{}
	claimOnce sync.Once
}

// ackedConfirmer confirms the ack watermark directly (checkpoints disabled).
type ackedConfirmer struct{ wm *lsn.Watermark[lsn.LSN] }

func (c ackedConfirmer) Durable() lsn.LSN {
	p, _ := c.wm.Acked()
	return p
}

// ConfigError is a configuration mistake found while building the service (exit
// code 2 for the CLI).
type ConfigError struct{ Err error }

func (e *ConfigError) Error() string { return e.Err.Error() }
func (e *ConfigError) Unwrap() error { return e.Err }

// ConnConfig parses the source DSN without ever echoing its password.
func ConnConfig(cfg *configs.Config) (*pgx.ConnConfig, error) {
	dsn, err := cfg.DSN()
	if err != nil {
		return nil, err
	}
	cc, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, &ConfigError{Err: fmt.Errorf("source DSN %s cannot be parsed: use a URL (postgres://user@host:5432/db?sslmode=verify-full) or key=value pairs",
			configs.RedactDSN(dsn))}
	}
	if cc.RuntimeParams["application_name"] == "" {
		cc.RuntimeParams["application_name"] = "fraiseql-observers"
	}
	if cfg.Source.ConnectTimeout > 0 {
		cc.ConnectTimeout = cfg.Source.ConnectTimeout
	}
	return cc, nil
}

// UnverifiedTLS reports a source connection to a host other than loopback or a unix
// socket whose TLS is off or does not verify the server's certificate and name.
func UnverifiedTLS(cc *pgx.ConnConfig) (host, why string) {
	hosts := []*pgconn.FallbackConfig{{Host: cc.Host, TLSConfig: cc.TLSConfig}}
	hosts = append(hosts, cc.Fallbacks...)
	for _, h := range hosts {
		if strings.HasPrefix(h.Host, "/") || h.Host == "localhost" {
			continue
		}
		if ip := net.ParseIP(h.Host); ip != nil && ip.IsLoopback() {
			continue
		}
		switch {
		case h.TLSConfig == nil:
			return h.Host, "not encrypted (sslmode disable, allow or prefer)"
		case h.TLSConfig.InsecureSkipVerify:
			return h.Host, "encrypted but the server's identity is not fully verified (sslmode prefer, require or verify-ca)"
		}
	}
	return "", ""
}

// New builds the service from a loaded configuration: it checks the observers'
// configuration, waits for PostgreSQL to answer, starts the operator surface, takes
// the slot's lease (failover) and builds the pipeline and the replication session.
// PostgreSQL going away at any of these steps is waited for (whileAway), not an error.
// Nothing shared changes before the slot is ours. ErrStoppedAsStandby and
// ErrStoppedWaitingForDB report a ctx that ended before the service could lead.
func New(ctx context.Context, cfg *configs.Config, log zerolog.Logger, opts Options) (*Service, error) {
	if opts.Actions == nil {
		return nil, errors.New("service: Options.Actions is required")
	}
	s := &Service{cfg: cfg, opts: opts, log: log, set: metrics.NewSet(), wm: lsn.NewWatermark(lsn.CompareLSNs), claimed: make(chan struct{})}
	if err := s.build(ctx); err != nil {
		s.setStopped(ctx) // recorded only if the heartbeat ran (a standby)
		s.close()
		return nil, err
	}
	return s, nil
}

func (s *Service) build(ctx context.Context) (err error) {
	cfg, log, opts := s.cfg, s.log, s.opts
	// Every configuration mistake (transport, actions, templates, conditions) is
	// reported before anything connects.
	if s.tc, err = TransportConfig(cfg); err != nil {
		return &ConfigError{Err: err}
	}
	if s.role, err = checkRole(opts.Role, s.tc, cfg); err != nil {
		return err
	}
	if err = opts.Actions.Check(ctx); err != nil {
		return err
	}
	cc, err := ConnConfig(cfg)
	if err != nil {
		return err
	}
	if host, why := UnverifiedTLS(cc); why != "" {
		log.Warn().Str("host", host).Msg("the source connection is " + why + ": use sslmode=verify-full with sslrootcert for a database reached over a network")
	}
	pcfg, err := pgxpool.ParseConfig("")
	if err != nil {
		return fmt.Errorf("pool config: %w", err)
	}
	pcfg.ConnConfig = cc.Copy()
	pcfg.MaxConns = opts.Actions.PoolSize()
	if s.pool, err = pgxpool.NewWithConfig(ctx, pcfg); err != nil {
		return fmt.Errorf("state database pool: %w", err)
	}
	e := &s.elect
	e.failover, e.slot, e.listenerID, e.app, e.pool, e.log = cfg.Failover, cfg.Source.Slot, cfg.ListenerID, cc.RuntimeParams["application_name"], s.pool, log
	if err = s.waitForDatabase(ctx); err != nil {
		return err
	}
	if s.role != RoleExecutor {
		if err = s.whileAway(ctx, func(ctx context.Context) error { return cdc.CheckServer(ctx, s.pool) }); err != nil {
			return err
		}
	}
	if err = s.startOperator(ctx); err != nil {
		return err
	}
	if s.nats() {
		if err = s.connectTransport(ctx); err != nil {
			return err
		}
	}
	if s.role == RoleExecutor { // no slot: no lease, no session
		if err = s.buildTransportExecutor(ctx); err != nil {
			return err
		}
		s.built.Store(true)
		return nil
	}
	loaded, err := s.lead(ctx)
	if err != nil {
		return err
	}
	if err = s.buildSide(ctx, loaded); err != nil {
		return err
	}
	if err = s.buildSource(ctx, cc, loaded); err != nil {
		return err
	}
	s.built.Store(true)
	return nil
}

// buildSide builds what consumes the session's events: the in-process pipeline,
// or with the nats transport the publisher, which fills events from the row cache
// before publishing them (and, for RoleAll, the executor).
func (s *Service) buildSide(ctx context.Context, loaded checkpoint.State) (err error) {
	if !s.nats() {
		return s.buildExecutor(ctx, loaded)
	}
	if err = s.buildDLQ(ctx); err != nil {
		return err
	}
	cfg := s.cfg
	if cfg.Caching.Enabled {
		if s.rows, err = pipeline.NewRowCache(int64(cfg.Caching.MaxBytes), s.set); err != nil {
			return err
		}
	}
	s.readerPipe = newReaderPipeline(cfg, s.tc)
	s.pub, err = transport.NewPublisher(s.tclient, transport.PublisherOptions{Acker: s.wm, Logger: s.log, Metrics: s.set,
		Filler: pipeline.NewFiller(pipeline.FillerOptions{RowCache: s.rows, Observers: imageObservers(cfg.Observers),
			MaxEventBytes: int(cfg.Source.MaxEventBytes), Logger: s.log}),
		MaxInFlightBytes: int64(cfg.Pipeline.MaxInFlightBytes), Observer: s.readerPipe.observerOf,
		Observed: s.readerPipe.routes.Observed})
	if err != nil {
		return err
	}
	s.readerPipe.pub = s.pub
	if s.role == RoleAll {
		return s.buildTransportExecutor(ctx)
	}
	return nil
}

// lead prepares the checkpoints and, under failover, waits until this instance holds
// the slot's lease and the slot is free; it returns the stored checkpoints. Nothing
// shared changes before the slot is ours: the epoch is taken when the session first
// streams it (claim), or with the lease under failover. PostgreSQL going away meanwhile
// is waited for (whileAway).
func (s *Service) lead(ctx context.Context) (loaded checkpoint.State, err error) {
	cfg := s.cfg
	if cfg.Checkpoints.Enabled {
		s.cps = checkpoint.NewStore(s.pool, cfg.State.Schema, cfg.Source.Slot, cfg.ListenerID)
		if err = s.prepareTables(ctx, s.cps.Migrate); err != nil {
			return loaded, err
		}
		if cfg.Failover.Enabled {
			if err = s.elect.campaign(ctx, s.cps, s.goOp); err != nil {
				return loaded, err
			}
			if err = s.whileAway(ctx, s.elect.takeOverSlot); err != nil {
				return loaded, err
			}
		}
		err = s.whileAway(ctx, func(ctx context.Context) (err error) {
			loaded, err = s.cps.Load(ctx)
			return err
		})
		if err != nil {
			return loaded, err
		}
	}
	s.elect.leading.Store(true)
	return loaded, nil
}

// buildStages builds what the executor side shares between pipelines: the DLQ and
// the dedup and row caches.
func (s *Service) buildStages(ctx context.Context) (err error) {
	cfg := s.cfg
	if cfg.DLQ.Enabled && s.dlq == nil {
		s.dlq = dlq.NewStore(s.pool, dlq.Options{Schema: cfg.State.Schema, Slot: cfg.Source.Slot, MaxSize: cfg.DLQ.MaxDLQSize, Metrics: s.set})
		if err = s.prepareTables(ctx, s.dlq.Migrate); err != nil {
			return err
		}
	}
	if cfg.Deduplication.Enabled {
		if s.dedup, err = pipeline.NewDedup(int64(cfg.Deduplication.CacheEntries)); err != nil {
			return err
		}
	}
	if cfg.Caching.Enabled {
		if s.rows, err = pipeline.NewRowCache(int64(cfg.Caching.MaxBytes), s.set); err != nil {
			return err
		}
	}
	return nil
}

// buildDLQ prepares the DLQ table alone (the reader of the nats transport parks
// there the changes that cannot become events).
func (s *Service) buildDLQ(ctx context.Context) error {
	cfg := s.cfg
	if !cfg.DLQ.Enabled {
		return nil
	}
	s.dlq = dlq.NewStore(s.pool, dlq.Options{Schema: cfg.State.Schema, Slot: cfg.Source.Slot, MaxSize: cfg.DLQ.MaxDLQSize, Metrics: s.set})
	if err := s.prepareTables(ctx, s.dlq.Migrate); err != nil {
		return err
	}
	return nil
}

// pipelineOptions are the options of a pipeline of observers acknowledging to
// acker, each action starting after its position in start (nil: from the first
// event it sees).
func (s *Service) pipelineOptions(observers []*pipeline.Observer, acker pipeline.Acker, start map[string]lsn.Position) pipeline.Options {
	cfg := s.cfg
	popts := pipeline.Options{
		Observers:        observers,
		Acker:            acker,
		Dedup:            s.dedup,
		RowCache:         s.rows,
		Start:            start,
		ListenerID:       cfg.ListenerID,
		MaxInFlightBytes: int64(cfg.Pipeline.MaxInFlightBytes),
		MaxEventBytes:    int(cfg.Source.MaxEventBytes),
		Logger:           s.log,
		Metrics:          s.set,
	}
	if s.dlq != nil {
		popts.DLQ = deadLetters{s.dlq}
	}
	return popts
}

// buildExecutor builds the executor side: the DLQ, dedup and row caches, the
// observers with their sinks (Options.Actions), and the pipeline, each action
// starting after its checkpoint in loaded (or at Options.StartLSN).
func (s *Service) buildExecutor(ctx context.Context, loaded checkpoint.State) (err error) {
	cfg, log, opts := s.cfg, s.log, s.opts
	if err = s.buildStages(ctx); err != nil {
		return err
	}
	observers, err := opts.Actions.Build(ctx, ActionDeps{Pool: s.pool, Metrics: s.set, Logger: log})
	if err != nil {
		return err
	}
	for _, o := range cfg.Observers {
		problems, err := ColumnProblems(ctx, s.pool, cfg.Source.Publication, o, opts.Actions.Templates)
		if err != nil {
			log.Warn().Err(err).Str("observer", o.Name).Msg("cannot check the columns the condition and templates read")
		}
		for _, p := range problems {
			log.Warn().Str("check", "condition_columns").Str("observer", o.Name).Msg(p)
		}
	}
	start := map[string]lsn.Position{}
	for id, pos := range loaded.Actions {
		start[id] = pos
	}
	if opts.StartLSN != 0 {
		// Later than the checkpoint: skip ahead. Earlier: deliver again from there (the
		// session refuses a position the slot no longer has).
		for _, o := range observers {
			for _, a := range o.Actions {
				start[a.ID] = lsn.Position{Commit: opts.StartLSN}
			}
		}
	}
	s.pipe, err = pipeline.New(s.pipelineOptions(observers, s.wm, start))
	return err
}

// buildSource builds the source of events: the replication session feeding the
// pipeline, confirming through the checkpoint writer (or the acknowledgements alone
// without checkpoints), with snapshots, and the slot monitor.
func (s *Service) buildSource(ctx context.Context, cc *pgx.ConnConfig, loaded checkpoint.State) (err error) {
	cfg, log, opts := s.cfg, s.log, s.opts
	schema, slot := cfg.State.Schema, cfg.Source.Slot
	checkpointLSN := loaded.Slot
	if loaded.DisabledAt != nil {
		// The instance that ran without checkpoints confirmed what it delivered: the
		// slot's position supersedes the rows it left behind.
		log.Info().Time("disabled_at", *loaded.DisabledAt).Str("disabled_by", loaded.DisabledBy).Str("stale_checkpoint", loaded.Slot.String()).
			Msg("checkpoints were disabled since the last one was written: resuming from the slot's confirmed position")
		checkpointLSN = 0
	}
	var confirm cdc.Confirmer = ackedConfirmer{s.wm}
	var consumer cdc.Consumer = s.pub
	var progress func() map[string]lsn.Position // per action: in-process only
	if s.pub == nil {
		consumer, progress = s.pipe, s.pipe.Progress
	}
	if s.cps != nil {
		s.writer = checkpoint.NewWriter(checkpoint.WriterOptions{
			Store:    s.cps,
			Slot:     s.wm.Acked,
			Actions:  progress,
			SystemID: func() string { return s.sess.SystemID() },
			Interval: cfg.Checkpoints.Interval,
			Initial:  checkpointLSN,
			OnError:  func(err error) { s.sess.NoteServerError(err) },
			Logger:   log,
			Metrics:  s.set,
		})
		confirm = s.writer
	}
	if s.cps != nil {
		if err = s.buildSnapshots(ctx, cc, loaded); err != nil {
			return err
		}
	}
	var intercept cdc.Interceptor
	if s.snaps != nil {
		intercept = s.snaps
	}
	s.sess, err = cdc.New(cdc.Options{
		DB:                   s.pool,
		ConnConfig:           cc,
		Slot:                 slot,
		Publication:          cfg.Source.Publication,
		ManageSlot:           cfg.Source.ManageSlot,
		ManagePublication:    cfg.Source.ManagePublication,
		PublicationTables:    tableNames(cfg.Source.PublicationTables),
		ObservedTables:       observedTables(cfg.Observers),
		StatusInterval:       cfg.Source.StatusInterval,
		ReceiveTimeout:       cfg.Source.ReceiveTimeout,
		ReconnectInitial:     cfg.Source.Reconnect.InitialDelay,
		ReconnectMax:         cfg.Source.Reconnect.MaxDelay,
		BatchSize:            cfg.Pipeline.BatchSize,
		MaxEventBytes:        int(cfg.Source.MaxEventBytes),
		IgnoreTables:         StateTables(schema),
		Checkpoint:           checkpointLSN,
		SystemID:             loaded.SystemID,
		StartLSN:             opts.StartLSN,
		ReplayWindowBytes:    uint64(cfg.ReplayWindow.Bytes),
		ReplayWindowDuration: cfg.ReplayWindow.Duration,
		Quarantine:           s.quarantine(),
		Claim:                s.claim,
		OnServerShutdown:     func() { go s.pool.Reset() }, // a smart shutdown waits for every session, the session's DB ones too
		Interceptor:          intercept,
		Logger:               log,
		Metrics:              s.set,
	}, s.wm, consumer, confirm)
	if err != nil {
		return err
	}
	s.ops.mon = cdc.NewMonitor(cdc.MonitorOptions{DB: s.pool, Slot: slot, Settled: s.sess.Settled,
		Interval: s.opsInterval(), Logger: log, Metrics: s.set})
	return nil
}

// claim runs when the session first streams the slot, which is then ours: only now
// does the instance change shared state. It takes the fencing epoch (without
// failover; the lease gave one), or records that the slot is streamed without
// checkpoints, and starts the listener heartbeat.
func (s *Service) claim(ctx context.Context) error {
	cfg := s.cfg
	switch {
	case s.elect.lease != nil:
	case s.cps != nil:
		if err := s.elect.takeEpoch(ctx, s.cps); err != nil {
			return err
		}
	default:
		err := checkpoint.MarkDisabled(ctx, s.pool, cfg.State.Schema, cfg.Source.Slot, cfg.ListenerID)
		var pgErr *pgconn.PgError
		if err != nil && (!errors.As(err, &pgErr) || cdc.ServerShuttingDown(err)) {
			return err // PostgreSQL is away: the session tries again after reconnecting
		}
		if err != nil {
			s.log.Warn().Err(err).Msg("cannot record in observer_checkpoints that checkpoints are disabled: with checkpoints enabled again, " +
				"the start would take the slot for advanced by someone else (docs/deployment.md, feature-level rollback)")
		}
	}
	if err := s.recordInitialSnapshot(ctx); err != nil {
		return err
	}
	s.elect.startHeartbeat(s.goOp)
	s.claimOnce.Do(func() { close(s.claimed) })
	return nil
}

// isClaimed reports whether claim has run.
func (s *Service) isClaimed() bool {
	select {
	case <-s.claimed:
		return true
	default:
		return false
	}
}

// deadLetters is the pipeline's DLQ: it stores each dead letter with the class the
// pipeline gives its error (pipeline.ErrorClass), so the dlq package needs nothing of
// the pipeline.
type deadLetters struct{ s *dlq.Store }

func (d deadLetters) Put(ctx context.Context, dl pipeline.DeadLetter) error {
	return d.s.Put(ctx, dlq.Letter{Event: dl.Event, Observer: dl.Observer, Action: dl.Action, ActionType: dl.ActionType,
		Err: dl.Err, ErrorClass: pipeline.ErrorClass(dl.Err), Attempts: dl.Attempts, FirstTry: dl.FirstTry, LastTry: dl.LastTry})
}

// quarantine parks changes that cannot become events in the DLQ table.
type quarantine struct{ s *dlq.Store }

func (q quarantine) Quarantine(ctx context.Context, p cdc.Poison) error {
	return q.s.PutUndeliverable(ctx, p.ID, p.LSN, p.Schema, p.Table, p.Reason, p.Err)
}

// quarantine returns where changes that cannot become events go: the DLQ, or nowhere
// (logged and skipped) when it is disabled.
func (s *Service) quarantine() cdc.Quarantine {
	if s.dlq == nil {
		return nil
	}
	return quarantine{s.dlq}
}

// prepareTables runs migrate, which creates or upgrades some of the service's tables,
// waiting for PostgreSQL while it is away (whileAway); a failure PostgreSQL answers is
// a preflight error.
func (s *Service) prepareTables(ctx context.Context, migrate func(context.Context) error) error {
	err := s.whileAway(ctx, migrate)
	if err == nil || errors.Is(err, ErrStoppedWaitingForDB) {
		return err
	}
	return &cdc.PreflightError{Check: "state", Msg: "cannot prepare the service's tables in the source database", Err: err,
		Hint: "check source.dsn and that the role may create tables in state.schema"}
}

func tableNames(refs []configs.TableRef) []string {
	out := make([]string, len(refs))
	for i, r := range refs {
		out[i] = r.String()
	}
	return out
}

// observedTables returns the tables observers name, each once, in order.
func observedTables(obs []*configs.Observer) []string {
	var out []string
	for _, o := range obs {
		if !o.Wildcard && o.Table.Table != "" && !slices.Contains(out, o.Table.String()) {
			out = append(out, o.Table.String())
		}
	}
	return out
}

// StateTables are the service's own tables in schema (checkpoints and epochs, the DLQ,
// the listener registry, snapshots), schema-qualified: the session skips their
// changes, and no snapshot reads them.
func StateTables(schema string) []string {
	var out []string
	for _, t := range append(append([]string{registry.TableName, dlq.TableName, checkpoint.PartitionsTable}, checkpoint.Tables...), snapshot.Tables...) {
		out = append(out, schema+"."+t)
	}
	return out
}

// pipelineStopGrace is how long a stop waits for the pipeline's goroutines after the
// drain deadline.
const pipelineStopGrace = 5 * time.Second

// Run runs the service until ctx is cancelled or the session fails, then shuts down in
// two tiers: stop reading and drain under pipeline.shutdown_timeout, then cancel; the
// checkpoints are written and the last status update confirms only what settled. It
// closes the service: Run is called once.
func (s *Service) Run(ctx context.Context) error {
	if s.role == RoleExecutor {
		return s.runExecutorRole(ctx)
	}
	defer s.close()
	base := context.WithoutCancel(ctx)
	pctx, pcancel := context.WithCancel(base)
	sctx, scancel := context.WithCancel(base)
	wctx, wcancel := context.WithCancel(base)
	defer pcancel()
	defer scancel()
	defer wcancel()

	pipeDone := make(chan error, 1)
	go func() { pipeDone <- s.runConsumer(pctx) }()
	execDone, ecancel := s.startExecutor(base)
	defer ecancel()
	writerDone := make(chan error, 1)
	if s.writer != nil {
		go func() {
			select { // nothing is written before the slot is ours
			case <-s.claimed:
				writerDone <- s.writer.Run(wctx)
			case <-wctx.Done():
			}
		}()
	}
	sessDone := make(chan error, 1)
	go func() { sessDone <- s.sess.Run(sctx) }()
	snapCtx, snapCancel := context.WithCancel(base)
	defer snapCancel()
	var snapDone chan error // nil without snapshots: never ready
	if s.snaps != nil {
		snapDone = make(chan error, 1)
		go func() { snapDone <- s.snaps.Run(snapCtx) }()
	}
	stopOps := s.runOperator(base)
	hbDone := make(chan error, 1)
	go func() { hbDone <- s.sess.Heartbeat(sctx, s.cfg.Source.HeartbeatInterval) }()
	leaseLost := make(chan error, 1)
	if s.elect.lease != nil {
		go s.elect.renew(wctx, leaseLost, func(err error) { s.sess.NoteServerError(err) })
	}

	var runErr, pipeErr error
	sessExited, pipeExited := false, false
	var pubDone <-chan error // the publisher stops by itself only for an event JetStream can never take
	if s.pub != nil {
		pubDone = pipeDone
	}
	select {
	case <-ctx.Done():
		s.log.Info().Msg("shutting down: stop reading, drain in-flight events")
	case runErr = <-sessDone:
		sessExited = true
	case runErr = <-writerDone:
	case runErr = <-leaseLost:
		s.log.Error().Err(runErr).Msg("lost the slot's lease: stepping down")
	case runErr = <-snapDone: // a newer process owns the slot
		snapDone = nil
	case runErr = <-execDone:
		execDone = nil
	case runErr = <-pubDone:
		pipeExited = true
		runErr = fmt.Errorf("transport: %w: set source.max_event_bytes below the NATS server's max_payload to park such changes in the DLQ", runErr)
	}

	s.setDraining(base)
	snapCancel() // no new chunk: the ones in flight are drained with the rest
	if snapDone != nil {
		if err := <-snapDone; err != nil && runErr == nil {
			runErr = err
		}
	}
	s.sess.StopReading()
	if !pipeExited {
		s.drainConsumer(base)
	}
	pcancel()
	if !pipeExited {
		pipeErr = s.waitConsumer(pipeDone)
	}
	if s.snaps != nil {
		fctx, fcancel := context.WithTimeout(base, 10*time.Second)
		if err := s.snaps.Flush(fctx); err != nil {
			s.log.Warn().Err(err).Msg("final snapshot progress write failed; the chunks since the last one are read again after a restart")
		}
		fcancel()
	}
	if s.writer != nil && s.isClaimed() {
		wcancel()
		fctx, fcancel := context.WithTimeout(base, 10*time.Second)
		if err := s.writer.Flush(fctx); err != nil && !errors.Is(err, context.Canceled) {
			s.log.Warn().Err(err).Msg("final checkpoint write failed")
		}
		fcancel()
	}
	scancel()
	<-hbDone
	if !sessExited {
		if err := <-sessDone; err != nil && runErr == nil {
			runErr = err
		}
	}
	ecancel() // the executor settles what its partitions hold, then releases them
	if execDone != nil {
		if err := <-execDone; err != nil && runErr == nil {
			runErr = err
		}
	}
	stopOps()
	if s.elect.lease != nil && !errors.Is(runErr, checkpoint.ErrFenced) {
		s.elect.release(base) // a clean stop hands the slot over at once
	}
	s.setStopped(base)
	return errors.Join(runErr, pipeErr)
}

// startExecutor runs the transport executor (RoleAll with nats) until the returned
// cancel; the channel receives its outcome (nil without an executor: never ready).
func (s *Service) startExecutor(ctx context.Context) (<-chan error, context.CancelFunc) {
	ctx, cancel := context.WithCancel(ctx)
	if s.exec == nil {
		return nil, cancel
	}
	return s.runExecutor(ctx), cancel
}

// waitConsumer waits for the pipeline (or the publisher) to stop after its
// cancellation. The router finishes the evaluation it is in before it sees the
// cancellation; evaluation.timeout bounds that, and a stop never waits longer than
// pipelineStopGrace.
func (s *Service) waitConsumer(done <-chan error) error {
	select {
	case err := <-done:
		return err
	case <-time.After(pipelineStopGrace):
		s.log.Error().Dur("waited", pipelineStopGrace).
			Msg("the pipeline did not stop (routing is stuck in an evaluation); exiting without it: unsettled events are delivered again after a restart")
		return nil
	}
}

// runConsumer runs what consumes the session's events: the pipeline, or the
// transport's publisher.
func (s *Service) runConsumer(ctx context.Context) error {
	if s.pub != nil {
		return s.pub.Run(ctx)
	}
	return s.pipe.Run(ctx)
}

// drainConsumer waits, under pipeline.shutdown_timeout, until the pipeline settled
// what it holds, or JetStream acknowledged every event handed to the publisher.
func (s *Service) drainConsumer(base context.Context) {
	dctx, dcancel := context.WithTimeout(base, s.cfg.Pipeline.ShutdownTimeout)
	defer dcancel()
	if s.pub != nil {
		if err := s.drainPublisher(dctx); err != nil {
			s.log.Warn().Int("unacknowledged", s.pub.Outstanding()).Dur("shutdown_timeout", s.cfg.Pipeline.ShutdownTimeout).
				Msg("drain deadline passed; events JetStream did not acknowledge are published again after a restart")
		}
		return
	}
	if err := s.pipe.Drain(dctx); err != nil {
		s.log.Warn().Int64("unsettled_bytes", s.pipe.InFlightBytes()).Dur("shutdown_timeout", s.cfg.Pipeline.ShutdownTimeout).
			Msg("drain deadline passed; cancelling deliveries in progress (their events are delivered again after a restart)")
	}
}

func (s *Service) close() {
	s.stopOperator()
	if s.tclient != nil {
		s.tclient.Close()
	}
	if s.dedup != nil {
		s.dedup.Close()
	}
	if s.rows != nil {
		s.rows.Close()
	}
	if s.pool != nil {
		s.pool.Close()
	}
}

// replay delivers again, for the named observer's actions (all when ""), the events
// of transactions committed from from (to to, when not 0), by rewinding the running
// stream: the pipeline delivers them again, or with the nats transport the
// publisher publishes them to the stream again (replayNATS). It returns the ids of
// the actions concerned.
func (s *Service) replay(ctx context.Context, observer string, from, to lsn.LSN) ([]string, error) {
	oldest, err := s.sess.OldestReplayable(ctx)
	if err != nil {
		return nil, err
	}
	if from < oldest {
		return nil, &cdc.ReplayTooOldError{Requested: from, Oldest: oldest, Slot: s.cfg.Source.Slot}
	}
	if s.pub != nil {
		return s.replayNATS(ctx, observer, from, to)
	}
	ids, err := s.pipe.Replay(observer, from, to)
	if err != nil {
		return nil, err
	}
	if err := s.sess.Rewind(ctx, from); err != nil {
		return nil, err
	}
	s.log.Info().Str("observer", observer).Str("from_lsn", from.String()).Str("to_lsn", to.String()).Strs("actions", ids).Msg("replay started")
	return ids, nil
}
