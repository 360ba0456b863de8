package snapshot

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/rs/zerolog"

	"github.com/fraiseql/fraiseql-observers/cdc"
	"github.com/fraiseql/fraiseql-observers/checkpoint"
	"github.com/fraiseql/fraiseql-observers/decoder"
	"github.com/fraiseql/fraiseql-observers/internal/backoff"
	"github.com/fraiseql/fraiseql-observers/lsn"
)

// Pipeline is what a snapshot needs of the pipeline; *pipeline.Pipeline implements it.
// With the nats transport the session's consumer is the transport's publisher and the
// reader runs no pipeline: the service implements it over the publisher (its pending
// events, the configured observers) and the executors' pipelines deliver the rows.
type Pipeline interface {
	// InFlightBytes is the memory of events handed on and not yet settled: a chunk is
	// read only while it is below half of Options.MaxInFlightBytes.
	InFlightBytes() int64
	// ObserversOf names the observers that fire for op on schema.table.
	ObserversOf(schema, table string, op decoder.Op) []string
	// Target sends the READ events built with rel to one observer only.
	Target(rel *decoder.Relation, observer string) (release func(), err error)
}

// Settled reports whether every event dispatched up to a ticket is settled; the
// replication session's watermark (*lsn.Watermark[lsn.LSN]) implements it.
type Settled interface {
	Done(t lsn.Ticket) bool
}

// Options configures a Manager. Zero values mean the documented defaults.
type Options struct {
	// ConnConfig is the source database's connection configuration, the one the
	// replication session uses (required).
	ConnConfig *pgx.ConnConfig
	// Pool reaches the source database for the state tables and for requests
	// (required).
	Pool *pgxpool.Pool
	// Schema holds the state tables (default public); Slot and Publication are the
	// session's (required).
	Schema, Slot, Publication string
	// ListenerID and Epoch fence the writes like the checkpoints': Epoch returns the
	// fencing epoch this instance holds (checkpoint.Store.AcquireEpoch or the lease),
	// read at every write (required).
	ListenerID string
	Epoch      func() int64
	// ChunkSize is the rows read per chunk (default 1024).
	ChunkSize int
	// RowsPerSecond limits the rows read per second (0: no limit).
	RowsPerSecond float64
	// MaxInFlightBytes is the pipeline's budget (pipeline.max_in_flight_bytes): chunks
	// are read only while the pipeline holds less than half of it (0: no bound).
	MaxInFlightBytes int64
	// MaxEventBytes bounds one row's event, as source.max_event_bytes (0: none).
	MaxEventBytes int
	Pipeline      Pipeline // required
	Settled       Settled  // required
	// Quarantine parks rows that cannot become events (nil: logged and skipped).
	Quarantine cdc.Quarantine
	// Streaming reports whether the replication session streams the slot (it is this
	// instance's): a snapshot starts only then (the session may still create the
	// publication and the slot, or the epoch may not be taken yet). Nil: do not wait.
	Streaming func() bool
	Logger    zerolog.Logger
	Metrics   *metrics.Set
}

// Manager runs the snapshots of one slot, one at a time in the order they were
// requested, and resumes the unfinished ones when the service starts. Create it
// with New, pass it to the replication session as its cdc.Interceptor, and run it
// with Run. Its methods are safe for concurrent use.
type Manager struct {
	opts    Options
	log     zerolog.Logger
	store   *store
	tap     *tap
	metrics *managerMetrics
	wake    chan struct{}

	mu   sync.Mutex
	cur  *job // the job running (nil: none)
	last *job // the job Run stopped at shutdown, for Flush

	afterRead func(no int64) // tests: called between a chunk's read and its high watermark
}

// New returns a Manager; it starts no goroutine and opens no connection.
func New(opts Options) (*Manager, error) {
	switch {
	case opts.ConnConfig == nil || opts.Pool == nil:
		return nil, errors.New("snapshot: ConnConfig and Pool are required")
	case opts.Slot == "" || opts.Publication == "":
		return nil, errors.New("snapshot: Slot and Publication are required")
	case opts.Pipeline == nil || opts.Settled == nil || opts.Epoch == nil:
		return nil, errors.New("snapshot: Pipeline, Settled and Epoch are required")
	}
	if opts.Schema == "" {
		opts.Schema = "public"
	}
	if opts.ChunkSize <= 0 {
		opts.ChunkSize = 1024
	}
	set := opts.Metrics
	if set == nil {
		set = metrics.NewSet()
	}
	m := &Manager{opts: opts, log: opts.Logger, tap: newTap(), wake: make(chan struct{}, 1),
		store: &store{pool: opts.Pool, schema: opts.Schema, slot: opts.Slot, listener: opts.ListenerID, epoch: opts.Epoch}}
	m.metrics = newManagerMetrics(set, m)
	return m, nil
}

// Migrate creates the state tables when they do not exist.
func (m *Manager) Migrate(ctx context.Context) error { return m.store.migrate(ctx) }

// Intercept implements cdc.Interceptor (see the package documentation).
func (m *Manager) Intercept(ev *decoder.Event, in cdc.Injector) bool { return m.tap.Intercept(ev, in) }

// Request asks for a snapshot of a table ("schema.table", or "table" in schema
// public), optionally of the rows matching Where (an SQL boolean expression over the
// table's columns), optionally for one observer only.
type Request struct {
	Table    string `json:"table"`
	Where    string `json:"where,omitempty"`
	Observer string `json:"observer,omitempty"`
}

// Start checks the request and records it; the snapshot runs when those requested
// before it are done. A request that cannot run as asked is a *RequestError, a
// snapshot of the same table already pending or running a *ConflictError; nothing is
// started then.
func (m *Manager) Start(ctx context.Context, req Request) (Info, error) {
	schema, name, err := splitTable(req.Table)
	if err != nil {
		return Info{}, &RequestError{Field: "table", Msg: err.Error()}
	}
	c, err := m.opts.Pool.Acquire(ctx)
	if err != nil {
		return Info{}, fmt.Errorf("check snapshot request: %w", err)
	}
	defer c.Release()
	t, err := describe(ctx, c.Conn(), m.opts.Publication, schema, name)
	if err != nil {
		return Info{}, err
	}
	estimate, err := checkWhere(ctx, c.Conn(), t, req.Where)
	if err != nil {
		return Info{}, err
	}
	if err := m.checkObservers(t, req.Observer); err != nil {
		return Info{}, err
	}
	info, err := m.store.create(ctx, Info{schema: schema, name: name, Table: t.String(), Where: req.Where, Observer: req.Observer,
		Origin: OriginCommand, ChunkSize: m.opts.ChunkSize, chunkBytes: m.chunkBytes(), RowsEstimate: estimate})
	if err != nil {
		return Info{}, err
	}
	m.log.Info().Int64("snapshot", info.ID).Str("table", info.Table).Bool("where", req.Where != "").Str("observer", req.Observer).
		Int64("rows_estimate", estimate).Msg("snapshot requested")
	m.poke()
	return info, nil
}

// checkObservers checks that the snapshot's rows have somewhere to go.
func (m *Manager) checkObservers(t *table, observer string) error {
	if observer != "" {
		rel, err := t.relation()
		if err != nil {
			return fmt.Errorf("describe %s: %w", t, err)
		}
		release, err := m.opts.Pipeline.Target(rel, observer)
		if err != nil {
			return &RequestError{Field: "observer", Msg: fmt.Sprintf("--observer: %v", err)}
		}
		release()
		return nil
	}
	if len(m.opts.Pipeline.ObserversOf(t.Schema, t.Name, decoder.OpRead)) == 0 {
		return &RequestError{Field: "observer", Msg: fmt.Sprintf("no observer receives READ events of %s: add READ to the event_type of the observers that should "+
			"get the table's rows, or name one with --observer", t)}
	}
	return nil
}

// Initial records a snapshot of each table (schema.table) for snapshot.mode initial,
// unless the slot already had an initial snapshot (a restart after it was recorded).
// A table that cannot be read is reported by its snapshot's failure.
func (m *Manager) Initial(ctx context.Context, tables []string) error {
	had, err := m.store.hadInitial(ctx)
	if err != nil || had {
		return err
	}
	for _, name := range tables {
		schema, rel, err := splitTable(name)
		if err != nil {
			return err
		}
		_, err = m.store.create(ctx, Info{schema: schema, name: rel, Table: name, Origin: OriginInitial, ChunkSize: m.opts.ChunkSize, chunkBytes: m.chunkBytes()})
		var conflict *ConflictError
		if err != nil && !errors.As(err, &conflict) {
			return err
		}
	}
	if len(tables) > 0 {
		m.log.Info().Strs("tables", tables).Msg("initial snapshot requested: the slot is streamed for the first time")
		m.poke()
	}
	return nil
}

// Cancel stops a pending or running snapshot. Rows already handed on are delivered;
// progress is kept in the table for the record.
func (m *Manager) Cancel(ctx context.Context, id int64) (Info, error) {
	info, err := m.store.get(ctx, id)
	if err != nil {
		return Info{}, err
	}
	if info.finished() {
		return m.live(info), nil
	}
	if err := m.store.finish(ctx, id, StateCancelled, ""); err != nil {
		return Info{}, err
	}
	m.mu.Lock()
	if j := m.cur; j != nil && j.info.ID == id && !j.cancelled.Swap(true) {
		close(j.cancel)
	}
	m.mu.Unlock()
	m.log.Info().Int64("snapshot", id).Str("table", info.Table).Msg("snapshot cancelled")
	return m.Get(ctx, id)
}

// Get returns one snapshot of the slot, or ErrNotFound.
func (m *Manager) Get(ctx context.Context, id int64) (Info, error) {
	info, err := m.store.get(ctx, id)
	if err != nil {
		return Info{}, err
	}
	return m.live(info), nil
}

// List returns the slot's most recent snapshots (50), newest first.
func (m *Manager) List(ctx context.Context) ([]Info, error) {
	infos, err := m.store.list(ctx, 50)
	for i := range infos {
		infos[i] = m.live(infos[i])
	}
	return infos, err
}

// Unfinished returns the pending and running snapshots, oldest first, for /status.
func (m *Manager) Unfinished(ctx context.Context) ([]Info, error) {
	infos, err := m.store.unfinished(ctx)
	for i := range infos {
		infos[i] = m.live(infos[i])
	}
	return infos, err
}

// live completes a stored Info with the running job's progress, rate and ETA.
func (m *Manager) live(info Info) Info {
	m.mu.Lock()
	j := m.cur
	m.mu.Unlock()
	if j == nil || j.info.ID != info.ID || info.finished() {
		return info
	}
	p := j.progressNow()
	info.Chunks, info.RowsRead, info.RowsSent = p.chunks, p.rowsRead, p.rowsSent
	info.RowsEstimate = j.info.RowsEstimate
	info.RowsPerSecond = j.rate()
	if info.RowsPerSecond > 0 && info.RowsEstimate > 0 {
		eta := max(float64(info.RowsEstimate-info.RowsRead), 0) / info.RowsPerSecond
		info.ETASeconds = &eta
	}
	return info
}

func (m *Manager) poke() {
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

// chunkBytes returns the byte bound of the chunks of a snapshot requested now: an
// eighth of the pipeline's budget (-1: no bound).
func (m *Manager) chunkBytes() int64 {
	if b := m.opts.MaxInFlightBytes / 8; b > 0 {
		return b
	}
	return -1
}

// roomInPipeline reports whether the pipeline has room for another chunk.
func (m *Manager) roomInPipeline() bool {
	return m.opts.MaxInFlightBytes <= 0 || m.opts.Pipeline.InFlightBytes() < m.opts.MaxInFlightBytes/2
}

// Run runs the pending and running snapshots, oldest first, and then those requested
// while it runs, until ctx ends; it returns nil then. A snapshot that fails for a
// reason reading again cannot cure is marked failed and the next one starts; other
// errors (a lost connection) are retried with backoff from the last completed chunk.
// It returns checkpoint.ErrFenced (wrapped) when a newer process owns the slot.
func (m *Manager) Run(ctx context.Context) error {
	if m.opts.Streaming != nil {
		t := time.NewTicker(50 * time.Millisecond)
		for !m.opts.Streaming() {
			select {
			case <-ctx.Done():
				t.Stop()
				return nil
			case <-t.C:
			}
		}
		t.Stop()
	}
	attempt := 0
	for {
		pending, err := m.store.unfinished(ctx)
		if err == nil && len(pending) > 0 {
			err = m.runOne(ctx, pending[0])
		}
		switch {
		case ctx.Err() != nil:
			return nil
		case errors.Is(err, checkpoint.ErrFenced):
			return err
		case errors.Is(err, errTableChanged):
			m.log.Info().Msg("snapshot table altered; resuming after its last completed chunk with the new definition")
			continue
		case err != nil:
			attempt++
			d := backoff.Exponential(attempt, time.Second, 32*time.Second)
			m.log.Warn().Err(err).Dur("retry_in", d).Msg("snapshot interrupted; resuming from its last completed chunk")
			if backoff.Sleep(ctx, d) != nil {
				return nil
			}
			continue
		case len(pending) > 0:
			attempt = 0
			continue
		}
		select {
		case <-ctx.Done():
			return nil
		case <-m.wake:
		}
	}
}

// runOne runs one snapshot until it ends, fails or ctx ends.
func (m *Manager) runOne(ctx context.Context, info Info) error {
	conn, err := connect(ctx, m.opts.ConnConfig)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	fail := func(err error) error {
		m.log.Error().Int64("snapshot", info.ID).Str("table", info.Table).Err(err).Msg("snapshot failed")
		return m.store.finish(ctx, info.ID, StateFailed, err.Error())
	}
	t, err := describe(ctx, conn, m.opts.Publication, info.schema, info.name)
	if err != nil {
		if permanent(err) {
			return fail(err)
		}
		return err
	}
	estimate, err := checkWhere(ctx, conn, t, info.Where)
	if err != nil {
		if permanent(err) {
			return fail(err)
		}
		return err
	}
	if info.State == StatePending || info.RowsEstimate == 0 {
		info.RowsEstimate = estimate
	}
	if err := m.checkObservers(t, info.Observer); err != nil {
		return fail(err)
	}
	rel, err := t.relation()
	if err != nil {
		return fail(err)
	}
	if info.Observer != "" {
		release, err := m.opts.Pipeline.Target(rel, info.Observer)
		if err != nil {
			return fail(err)
		}
		defer func() {
			// At shutdown the pipeline goes away with its queues: never end the
			// targeting while the chunks' READ events may wait to be routed.
			if ctx.Err() == nil {
				release()
			}
		}()
	}
	// A snapshot keeps the byte bound it was requested with (one requested by an
	// earlier version takes the current one from now on).
	bound, ok, err := m.store.start(ctx, info.ID, info.RowsEstimate, m.chunkBytes())
	if !ok {
		return err // nil: cancelled meanwhile
	}
	m.metrics.rows(info.Table) // the table's series exist from the start
	m.metrics.chunks(info.Table)
	w := m.tap.watch(t)
	defer m.tap.unwatch(w)
	r := newReader(conn, t, rel, info.Where, info.ChunkSize, m.opts.MaxEventBytes)
	r.maxBytes = bound
	j := &job{m: m, info: info, w: w, r: r,
		done:    progress{chunks: info.Chunks, rowsRead: info.RowsRead, rowsSent: info.RowsSent, lastKey: info.lastKey},
		started: time.Now(), base: info.RowsRead, cancel: make(chan struct{})}
	m.mu.Lock()
	m.cur = j
	m.mu.Unlock()
	if info.Chunks == 0 {
		m.log.Info().Int64("snapshot", info.ID).Str("table", info.Table).Int64("rows_estimate", info.RowsEstimate).Int("chunk_size", info.ChunkSize).
			Int64("chunk_bytes", bound).Msg("snapshot started")
	} else {
		m.log.Info().Int64("snapshot", info.ID).Str("table", info.Table).Int64("chunks", info.Chunks).Int64("rows_read", info.RowsRead).
			Int("chunk_size", info.ChunkSize).Int64("chunk_bytes", bound).Msg("snapshot resumed")
	}
	err = j.run(ctx)
	if ctx.Err() == nil {
		j.drain(ctx) // the targeting ends (deferred) once the rows handed on are routed
	}
	m.mu.Lock()
	m.cur = nil
	if ctx.Err() != nil {
		m.last = j
	}
	m.mu.Unlock()
	if err != nil && ctx.Err() == nil && permanent(err) {
		return fail(err)
	}
	return err
}

// Flush records the chunks completed since the last write, after the pipeline drained
// at shutdown (Run has returned).
func (m *Manager) Flush(ctx context.Context) error {
	m.mu.Lock()
	j := m.last
	m.last = nil
	m.mu.Unlock()
	if j == nil {
		return nil
	}
	return j.collect(ctx)
}
