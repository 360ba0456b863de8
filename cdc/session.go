// Package cdc owns the logical replication session: preflight checks, slot and
// publication management, START_REPLICATION, keepalives, standby status updates and
// reconnects. One goroutine owns the replication connection; it decodes the stream,
// hands events to a Consumer and confirms to PostgreSQL only what the Confirmer
// reports as durably settled.
package cdc

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/rs/zerolog"

	"github.com/fraiseql/fraiseql-observers/decoder"
	"github.com/fraiseql/fraiseql-observers/internal/backoff"
	"github.com/fraiseql/fraiseql-observers/lsn"
)

// Consumer receives decoded events, each with the ticket of its position in the
// session's watermark (tickets[i] is that of evs[i]), to acknowledge once the event is
// settled; it owns both slices. Push must never block; Full and Ready implement
// backpressure: while Full reports true the session stops reading the stream (it keeps
// sending status updates) until Ready fires.
type Consumer interface {
	Push(evs []*decoder.Event, tickets []lsn.Ticket)
	Full() bool
	Ready() <-chan struct{}
}

// Interceptor sees the stream before the Consumer does: a reader of table rows (a
// snapshot) watches the changes between its watermarks and hands its rows on at the
// stream's position of its high watermark.
type Interceptor interface {
	// Intercept is called on the session goroutine for every event of the stream, in
	// stream order, after IgnoreTables and heartbeats and before the event is handed
	// on. It returns false to consume ev: the session acknowledges it at once and does
	// not hand it on. It may call in.Inject to hand on events of its own right after
	// ev, at ev's position in the watermark: the slot is not confirmed past ev until
	// they are settled. It must not block.
	Intercept(ev *decoder.Event, in Injector) bool
}

// Injector hands events an Interceptor adds to the stream on to the Consumer.
type Injector interface {
	// Inject adds ev after the intercepted event and returns its dispatch ticket. The
	// Consumer owns ev from then on.
	Inject(ev *decoder.Event) lsn.Ticket
}

// Confirmer reports the highest position that is durably settled; the session never
// reports a flush position past it.
type Confirmer interface {
	Durable() lsn.LSN
}

// Options configures a Session. Zero values mean the documented defaults.
type Options struct {
	// DB runs every query of the session that is not replication: preflight and
	// publication checks, slot state, primary keys, heartbeats, the oldest replayable
	// position. It is the owner's (usually its *pgxpool.Pool, shared with checkpoints
	// and the DLQ) and the session never closes it. Required.
	DB DB
	// ConnConfig is the (non-replication) connection configuration of the source
	// database. The session dials only two kinds of connection from it itself: its
	// replication connections (streaming, and creating the slot under ManageSlot),
	// and the short shutdown probe (see ShutdownProbeInterval). Required.
	ConnConfig        *pgx.ConnConfig
	Slot              string // required
	Publication       string // required
	ManageSlot        bool
	ManagePublication bool
	PublicationTables []string
	// ObservedTables are the "schema.table" names observers watch: preflight warns
	// about each one whose changes cannot arrive (missing, not published, or
	// partitioned and published under its partitions' names).
	ObservedTables []string
	// StatusInterval is the period of standby status updates (default 10s). Each
	// asks the server for a reply, so a live connection is never silent for long.
	StatusInterval time.Duration
	// ReceiveTimeout is how long the stream may stay silent while the session waits
	// for it before the connection is taken for dead and replaced (default
	// 2 × StatusInterval + 5s): a network that drops packets without closing the
	// socket is noticed in seconds, not when TCP gives up.
	ReceiveTimeout time.Duration
	// ReconnectInitial and ReconnectMax bound the backoff between reconnects (1s, 60s).
	ReconnectInitial, ReconnectMax time.Duration
	// BatchSize is how many events the session hands over at once at most (100).
	BatchSize int
	// MaxEventBytes bounds one decoded change (0 = unlimited).
	MaxEventBytes int
	// IgnoreTables are "schema.table" names whose changes are never handed on (our own
	// state tables, when a FOR ALL TABLES publication includes them).
	IgnoreTables []string
	// Checkpoint is our durable position (0 when there is none) and SystemID the
	// server's system identifier recorded with it ("" when none).
	Checkpoint lsn.LSN
	SystemID   string
	// StartLSN is an operator-requested start position (0 = none): later than
	// Checkpoint to skip ahead, or earlier (but not before the slot's confirmed
	// position) to deliver again.
	StartLSN lsn.LSN
	// ReplayWindowBytes and ReplayWindowDuration keep the confirmed position that far
	// behind the durable one, so recent history stays replayable from the slot (at the
	// cost of WAL kept on the server). Zero means no window.
	ReplayWindowBytes    uint64
	ReplayWindowDuration time.Duration
	// Quarantine stores changes that cannot become events; nil logs and skips them.
	Quarantine Quarantine
	// Claim, when set, is called once, after the first START_REPLICATION succeeded and
	// before any change is read: from then on the slot is this session's (PostgreSQL
	// lets one session stream a slot at a time). The service takes its fencing epoch
	// there, so that an instance that never got the slot changes nothing. An error
	// ends the connection; the next one calls Claim again.
	Claim func(ctx context.Context) error
	// OnServerShutdown, when set, is called when the session notices that the server
	// is shutting down, so that the owner closes its other connections too, DB's
	// among them (pgxpool.Pool.Reset closes the idle ones at once and the others when
	// they are released): a smart shutdown waits for every session to end. It must
	// not block.
	OnServerShutdown func()
	// ShutdownProbeInterval is the period of the short connection the session opens
	// while it streams to notice a smart shutdown, in which the server refuses new
	// sessions but lets existing ones run (default 5s; negative: never).
	ShutdownProbeInterval time.Duration
	// Interceptor, when set, sees every event before the Consumer (snapshots).
	Interceptor Interceptor
	Logger      zerolog.Logger
	Metrics     *metrics.Set
}

// Session streams one slot. Create it with New and run it with Run.
type Session struct {
	opts    Options
	log     zerolog.Logger
	wm      *lsn.Watermark[lsn.LSN]
	out     Consumer
	confirm Confirmer
	ignore  map[string]bool
	m       *sessionMetrics

	stopReading atomic.Bool
	stopCh      chan struct{}
	rewind      chan rewindRequest
	stopOnce    sync.Once
	leave       chan *ServerShutdownError // the server is shutting down: end the stream
	claimed     bool                      // session goroutine only

	systemID     atomic.Value // string
	received     atomic.Uint64
	confirmed    atomic.Uint64
	serverWALEnd atomic.Uint64
	connected    atomic.Bool
	reconnects   atomic.Int64
	lastErr      atomic.Value // string
	lastCommit   atomic.Int64 // unix nanos of the last commit received
	window       replayWindow // session goroutine only
	commits      commitLog    // received transactions not settled yet (lag in seconds)
}

// New returns a Session; it starts no goroutine and opens no connection.
func New(opts Options, wm *lsn.Watermark[lsn.LSN], out Consumer, confirm Confirmer) (*Session, error) {
	switch {
	case opts.DB == nil || opts.ConnConfig == nil:
		return nil, errors.New("cdc: DB and ConnConfig are required")
	case opts.Slot == "" || opts.Publication == "":
		return nil, errors.New("cdc: Slot and Publication are required")
	case wm == nil || out == nil || confirm == nil:
		return nil, errors.New("cdc: watermark, consumer and confirmer are required")
	}
	if opts.StatusInterval <= 0 {
		opts.StatusInterval = 10 * time.Second
	}
	if opts.ReceiveTimeout <= 0 {
		opts.ReceiveTimeout = 2*opts.StatusInterval + 5*time.Second
	}
	if opts.ReconnectInitial <= 0 {
		opts.ReconnectInitial = time.Second
	}
	if opts.ReconnectMax <= 0 {
		opts.ReconnectMax = time.Minute
	}
	if opts.BatchSize <= 0 {
		opts.BatchSize = 100
	}
	if opts.ShutdownProbeInterval == 0 {
		opts.ShutdownProbeInterval = 5 * time.Second
	}
	set := opts.Metrics
	if set == nil {
		set = metrics.NewSet()
	}
	s := &Session{opts: opts, log: opts.Logger, wm: wm, out: out, confirm: confirm,
		ignore: map[string]bool{}, stopCh: make(chan struct{}), rewind: make(chan rewindRequest),
		leave: make(chan *ServerShutdownError, 1)}
	for _, t := range opts.IgnoreTables {
		s.ignore[t] = true
	}
	s.systemID.Store(opts.SystemID)
	s.lastErr.Store("")
	s.m = newSessionMetrics(set, s)
	return s, nil
}

// StopReading makes the session stop reading the stream while it keeps sending status
// updates, the first step of a graceful shutdown. It is safe to call more than once.
func (s *Session) StopReading() {
	s.stopOnce.Do(func() {
		s.stopReading.Store(true)
		close(s.stopCh)
	})
}

// SystemID returns the server's system identifier once the session has connected.
func (s *Session) SystemID() string { return s.systemID.Load().(string) }

// Status is a snapshot of the session for the status command and metrics.
type Status struct {
	Connected    bool
	Slot         string
	ReceivedLSN  lsn.LSN // end of the last transaction received
	ConfirmedLSN lsn.LSN // last flush position reported to the server
	ServerWALEnd lsn.LSN // server WAL end from the last keepalive or data message
	SettledLSN   lsn.LSN // every change received up to here is settled (see Settled)
	LagSeconds   float64 // see LagSeconds
	Reconnects   int64
	LastError    string
	LastCommit   time.Time
}

// Status returns a snapshot of the session; safe for concurrent use.
func (s *Session) Status() Status {
	st := Status{
		Connected:    s.connected.Load(),
		Slot:         s.opts.Slot,
		ReceivedLSN:  lsn.LSN(s.received.Load()),
		ConfirmedLSN: lsn.LSN(s.confirmed.Load()),
		ServerWALEnd: lsn.LSN(s.serverWALEnd.Load()),
		SettledLSN:   s.Settled(),
		LagSeconds:   s.LagSeconds(time.Now()),
		Reconnects:   s.reconnects.Load(),
		LastError:    s.lastErr.Load().(string),
	}
	if n := s.lastCommit.Load(); n != 0 {
		st.LastCommit = time.Unix(0, n)
	}
	return st
}

// Run checks the server, then streams until ctx is cancelled, reconnecting with
// capped exponential backoff and jitter after connection loss. While PostgreSQL cannot
// be reached (DatabaseAway) it waits for it, before streaming as after. On
// cancellation it sends a last status update with the durable position and returns
// nil. It returns a *PreflightError or *GapError when the operator must act, without
// retrying.
func (s *Session) Run(ctx context.Context) error {
	pre, err := s.preflight(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return nil // stopped while starting: nothing was streamed, nothing to report
		}
		return err
	}
	// The slot is never ahead of our checkpoint here (Preflight reports that as a gap).
	// The server honours a start position later than the slot's, and silently moves an
	// earlier one forward: refuse that instead of skipping changes.
	start := max(s.opts.Checkpoint, pre.Slot.ConfirmedFlushLSN)
	if s.opts.StartLSN != 0 {
		if s.opts.StartLSN < pre.Slot.ConfirmedFlushLSN {
			return &ReplayTooOldError{Requested: s.opts.StartLSN, Oldest: pre.Slot.ConfirmedFlushLSN, Slot: s.opts.Slot}
		}
		start = s.opts.StartLSN
	}
	s.wm.Reset(start)
	// What the slot has confirmed so far: the server ignores lower flush positions, so
	// reports never go below it (the replay window may ask for less).
	s.confirmed.Store(uint64(pre.Slot.ConfirmedFlushLSN))
	s.received.Store(uint64(start))
	s.log.Info().Str("slot", s.opts.Slot).Str("publication", s.opts.Publication).
		Str("start_lsn", start.String()).Str("checkpoint", s.opts.Checkpoint.String()).
		Str("slot_confirmed_flush_lsn", pre.Slot.ConfirmedFlushLSN.String()).Msg("starting replication")

	attempt := 0
	var pendingRewind lsn.LSN
	for {
		began, receivedBefore := time.Now(), s.received.Load()
		streamed, err := s.stream(ctx, start)
		if streamed {
			pendingRewind = 0
		}
		s.connected.Store(false)
		if ctx.Err() != nil {
			return nil
		}
		if err == nil {
			return nil
		}
		var rw *rewindError
		if errors.As(err, &rw) {
			s.log.Info().Str("from_lsn", rw.req.to.String()).Msg("rewinding the stream for a replay")
			start, pendingRewind = rw.req.to, rw.req.to
			rw.req.done <- nil
			attempt = 0
			continue
		}
		if permanent(err) {
			return err
		}
		if perr := s.publicationProblem(ctx, err); perr != nil {
			return perr
		}
		s.lastErr.Store(err.Error())
		// A session that streamed something, or for a while, was healthy: start the
		// backoff afresh. One that failed at once (the server errs on the first
		// change, say) keeps backing off instead of reconnecting in a hot loop.
		if streamed && (s.received.Load() > receivedBefore || time.Since(began) >= time.Minute) {
			attempt = 0
		}
		attempt++
		s.reconnects.Add(1)
		s.m.reconnects.Inc()
		d := backoff.Exponential(attempt, s.opts.ReconnectInitial, s.opts.ReconnectMax)
		msg := "replication connection lost; reconnecting"
		var down *ServerShutdownError
		if errors.As(err, &down) || ServerShuttingDown(err) {
			// Not a failure: the server stops or restarts, and pausing lets it.
			msg = "PostgreSQL is shutting down or restarting; reconnecting when it is back"
		}
		s.log.Warn().Err(err).Dur("retry_in", d).Int("attempt", attempt).Msg(msg)
		if backoff.Sleep(ctx, d) != nil {
			return nil
		}
		// Resume from what is durably confirmed: the server re-sends everything after
		// it, and the pipeline drops what it already settled.
		start = max(s.confirm.Durable(), start)
		if pendingRewind != 0 {
			start = pendingRewind
		}
		if err := s.recheck(ctx, start); err != nil {
			if permanent(err) {
				return err
			}
			s.log.Warn().Err(err).Msg("slot check before reconnect failed")
		}
	}
}

// preflight runs Preflight until PostgreSQL answers it. While the database is away
// (DatabaseAway: stopped, restarting, a network cut) it waits and tries again with
// backoff, logging each attempt, like a reconnect; whatever PostgreSQL answers is
// returned, and so is a failure once ctx is done.
func (s *Session) preflight(ctx context.Context) (*PreflightResult, error) {
	for attempt := 1; ; attempt++ {
		pre, err := s.Preflight(ctx, s.opts.Checkpoint)
		if err == nil || ctx.Err() != nil || !DatabaseAway(err) {
			return pre, err
		}
		s.lastErr.Store(err.Error())
		d := backoff.Exponential(attempt, s.opts.ReconnectInitial, s.opts.ReconnectMax)
		s.log.Warn().Err(err).Int("attempt", attempt).Dur("retry_in", d).
			Msg("PostgreSQL cannot be reached before streaming; waiting for it")
		if err := backoff.Sleep(ctx, d); err != nil {
			return nil, err
		}
	}
}

// publicationProblem turns an undefined_object error (SQLSTATE 42704) that the
// walsender sent while streaming into a PreflightError when the catalog shows that
// the publication is the problem: reconnecting cannot cure it. pgoutput looks the
// publication up, in the catalog as it was when each change was written, only once
// it streams changes; the slot exists (the walsender streams it), so the publication
// it did not find is ours. If it exists now, the slot predates it (PostgreSQL decodes
// each change with the catalog as it was when the change was written); otherwise it
// was dropped. An error when reading the catalog leaves the decision to the next
// attempt.
func (s *Session) publicationProblem(ctx context.Context, err error) error {
	var we *walsenderError
	var pgErr *pgconn.PgError
	if !errors.As(err, &we) || !errors.As(err, &pgErr) || pgErr.Code != "42704" {
		return nil
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var exists bool
	if cerr := s.opts.DB.QueryRow(cctx, "SELECT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = $1)", s.opts.Publication).Scan(&exists); cerr != nil {
		return nil
	}
	if exists {
		return &PreflightError{Check: "publication", Err: err,
			Msg: fmt.Sprintf("slot %q cannot be streamed with publication %q: the slot was created before the publication, and PostgreSQL decodes the changes written before the publication existed without it", s.opts.Slot, s.opts.Publication),
			Hint: "create the slot after the publication: drop it and let manage_slot create it again (changes before that are not delivered), " +
				"or move it past the publication's creation with pg_replication_slot_advance after deciding those changes do not matter"}
	}
	return &PreflightError{Check: "publication", Err: err,
		Msg:  fmt.Sprintf("publication %q was dropped while the service streamed", s.opts.Publication),
		Hint: fmt.Sprintf("CREATE PUBLICATION %s FOR TABLE ... again, then start the service", pgx.Identifier{s.opts.Publication}.Sanitize())}
}

// recheck re-reads the slot before a reconnect: a slot that vanished or was
// invalidated while we were away is a gap, not something to retry.
func (s *Session) recheck(ctx context.Context, durable lsn.LSN) error {
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	slot, err := ReadSlot(cctx, s.opts.DB, s.opts.Slot)
	if err != nil {
		return err
	}
	switch {
	case !slot.Exists:
		return &GapError{Slot: s.opts.Slot, Reason: fmt.Sprintf("the slot was dropped while the service was reconnecting (our position %s)", durable)}
	case slot.WALStatus == "lost":
		return &GapError{Slot: s.opts.Slot, Reason: "the slot was invalidated (wal_status = lost) while the service was reconnecting: " + lostAdvice}
	case slot.ConfirmedFlushLSN > durable:
		return &GapError{Slot: s.opts.Slot, Reason: fmt.Sprintf("the slot's confirmed_flush_lsn %s moved past our position %s while we were disconnected", slot.ConfirmedFlushLSN, durable)}
	}
	return nil
}

// replConfig derives the replication connection configuration.
func (s *Session) replConfig() *pgconn.Config {
	cfg := s.opts.ConnConfig.Config.Copy()
	if cfg.RuntimeParams == nil {
		cfg.RuntimeParams = map[string]string{}
	}
	cfg.RuntimeParams["replication"] = "database"
	if cfg.RuntimeParams["application_name"] == "" {
		cfg.RuntimeParams["application_name"] = "fraiseql-observers"
	}
	return cfg
}

// pluginArgs returns the pgoutput options: protocol 1, our publication, messages on.
func (s *Session) pluginArgs() []string {
	return []string{
		"proto_version '1'",
		"publication_names '" + strings.ReplaceAll(pgx.Identifier{s.opts.Publication}.Sanitize(), "'", "''") + "'",
		"messages 'true'",
	}
}
