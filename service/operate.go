package service

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/fraiseql/fraiseql-observers/admin"
	"github.com/fraiseql/fraiseql-observers/cdc"
	"github.com/fraiseql/fraiseql-observers/lsn"
	"github.com/fraiseql/fraiseql-observers/pipeline"
	"github.com/fraiseql/fraiseql-observers/registry"
	"github.com/fraiseql/fraiseql-observers/snapshot"
)

// operator is the service's operator surface: the admin endpoint and the listener
// heartbeat, which run from the start (a standby serves them too), and the slot
// monitor and DLQ size refresh, which run while the instance leads.
type operator struct {
	reg       *registry.Store
	mon       *cdc.Monitor // set once built
	adm       *admin.Server
	startedAt time.Time
	host      string
	draining  bool // guarded by mu
	stopped   bool // guarded by mu
	mu        sync.Mutex

	// ctx ends the admin endpoint and the heartbeat (stop); wg waits for them.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// opsInterval is the period of heartbeats, slot readings and DLQ size refreshes.
func (s *Service) opsInterval() time.Duration {
	return min(s.cfg.Source.StatusInterval, 5*time.Second)
}

// startOperator prepares the listener registry and starts serving the admin endpoint,
// before anything else: probes and scrapes reach a standby, and an instance that is
// still starting, like a leader. A busy port is reported before streaming starts.
func (s *Service) startOperator(ctx context.Context) error {
	cfg := s.cfg
	op := &s.ops
	op.startedAt = time.Now()
	op.host, _ = os.Hostname()
	op.ctx, op.cancel = context.WithCancel(context.WithoutCancel(ctx))
	op.reg = registry.NewStore(s.pool, cfg.State.Schema, cfg.Source.Slot)
	if err := s.prepareTables(ctx, op.reg.Migrate); err != nil {
		return err
	}
	s.elect.hb = registry.NewHeartbeat(registry.HeartbeatOptions{Store: op.reg, Record: s.record, Interval: s.opsInterval(),
		Logger: s.log, Metrics: s.set})
	if s.role == RoleExecutor { // never leads nor stands by: it has no slot
		s.set.NewGauge(`observer_role{role="executor"}`, func() float64 { return 1 })
	} else {
		s.set.NewGauge(`observer_role{role="leader"}`, func() float64 { return b2f(s.elect.leading.Load()) })
		s.set.NewGauge(`observer_role{role="standby"}`, func() float64 { return b2f(!s.elect.leading.Load()) })
	}
	if cfg.Failover.Enabled {
		s.set.NewGauge("observer_lease_epoch", func() float64 { e, _, _ := s.elect.state(); return float64(e) })
		s.set.NewGauge("observer_lease_remaining_seconds", func() float64 {
			_, _, exp := s.elect.state()
			if exp.IsZero() {
				return 0
			}
			return time.Until(exp).Seconds()
		})
	}
	if cfg.Admin.Listen == "" {
		return nil
	}
	var err error
	op.adm, err = admin.New(admin.Options{Listen: cfg.Admin.Listen, Token: cfg.Admin.Token.Value(),
		TLSCertFile: cfg.Admin.TLSCertFile, TLSKeyFile: cfg.Admin.TLSKeyFile, Metrics: s.set,
		Ready: s, Status: s, Events: eventHistory{s}, Cache: s, Replay: s, Snapshots: s, Logger: s.log})
	if err != nil {
		return err
	}
	ln, err := op.adm.Listen()
	if err != nil {
		return err
	}
	s.log.Info().Str("listen", ln.Addr().String()).Bool("token", cfg.Admin.Token.IsSet()).Msg("admin endpoint listening")
	s.goOp(func(ctx context.Context) error { return op.adm.Serve(ctx, ln) })
	return nil
}

// goOp runs f until the operator surface stops.
func (s *Service) goOp(f func(context.Context) error) {
	s.ops.wg.Add(1)
	go func() {
		defer s.ops.wg.Done()
		if err := f(s.ops.ctx); err != nil {
			s.log.Error().Err(err).Msg("operator task stopped")
		}
	}()
}

// stopOperator stops the admin endpoint and the heartbeat and waits for them.
func (s *Service) stopOperator() {
	if s.ops.cancel != nil {
		s.ops.cancel()
		s.ops.wg.Wait()
	}
}

// runOperator starts the tasks of a leader; the returned function stops them and
// waits for them.
func (s *Service) runOperator(ctx context.Context) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	goRun := func(f func(context.Context) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(ctx); err != nil {
				s.log.Error().Err(err).Msg("operator task stopped")
			}
		}()
	}
	goRun(s.ops.mon.Run)
	if s.dlq != nil {
		goRun(s.refreshDLQSize)
	}
	return func() {
		cancel()
		wg.Wait()
	}
}

// refreshDLQSize keeps observer_dlq_items_total current while dlq commands change the
// table from other processes.
func (s *Service) refreshDLQSize(ctx context.Context) error {
	t := time.NewTicker(s.opsInterval())
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			if _, err := s.dlq.Count(cctx); err != nil && ctx.Err() == nil {
				s.log.Debug().Err(err).Msg("refresh DLQ size failed")
			}
			cancel()
		}
	}
}

// setDraining marks the start of the shutdown and reports it at once.
func (s *Service) setDraining(ctx context.Context) {
	s.ops.mu.Lock()
	s.ops.draining = true
	s.ops.mu.Unlock()
	s.elect.beat(ctx)
}

// setStopped records the clean end of the instance in the registry.
func (s *Service) setStopped(ctx context.Context) {
	s.ops.mu.Lock()
	s.ops.stopped = true
	s.ops.mu.Unlock()
	s.elect.beat(ctx)
}

// condition is the one source of truth about the instance: its registry state,
// whether it is ready (nil) or why not, and whether it is healthy — doing its job: a
// leader whose replication stream is live and whose checkpoints are written, or a
// standby ready to take over. /readyz, observer_listener_health (with the stored
// heartbeat), the registry record and status all derive from it;
// observer_replication_connected is the live stream alone.
// routerStallAfter is how long the router may spend on one condition before /readyz
// reports routing as stuck (evaluation.timeout normally ends it long before).
const routerStallAfter = 5 * time.Second

func (s *Service) condition() (state string, ready error, healthy bool) {
	s.ops.mu.Lock()
	draining, stopped := s.ops.draining, s.ops.stopped
	s.ops.mu.Unlock()
	waiting := s.waitingFor.Load()
	switch {
	case stopped:
		return registry.StateStopped, errors.New("shutting down"), false
	case draining:
		return registry.StateDraining, errors.New("shutting down"), false
	case waiting != nil:
		return registry.StateStarting, errors.New(*waiting), false
	case s.role == RoleExecutor:
		return s.executorCondition()
	case !s.elect.leading.Load():
		return registry.StateStandby, s.elect.standbyReason(), true
	case !s.built.Load():
		return registry.StateStarting, errors.New("starting: the replication connection is not up yet"), false
	}
	st := s.sess.Status()
	switch {
	case st.Connected:
	case st.Reconnects > 0:
		return registry.StateReconnecting, fmt.Errorf("reconnecting to PostgreSQL: %s", st.LastError), false
	default:
		return registry.StateStarting, errors.New("starting: the replication connection is not up yet"), false
	}
	if s.writer != nil {
		if since, err := s.writer.Failing(); err != nil {
			return registry.StateStreaming, fmt.Errorf("checkpoints cannot be written (since %s): %w", since.UTC().Format(time.RFC3339), err), false
		}
	}
	if s.pipe != nil && s.pipe.Stalled(routerStallAfter) {
		return registry.StateStreaming, fmt.Errorf("routing is stuck: one condition has been evaluating for more than %s (evaluation.timeout is %s)", routerStallAfter, s.cfg.Evaluation.Timeout), false
	}
	if exp, expired := s.elect.leaseExpired(); expired {
		return registry.StateStreaming, fmt.Errorf("the slot's lease expired at %s and could not be renewed yet", exp.UTC().Format(time.RFC3339)), false
	}
	if err := s.transportProblem(); err != nil {
		return registry.StateStreaming, err, false
	}
	return registry.StateStreaming, nil, true
}

// executorCondition is the condition of an instance with --role executor: ready
// while it reaches NATS.
func (s *Service) executorCondition() (state string, ready error, healthy bool) {
	if !s.built.Load() {
		return registry.StateStarting, errors.New("starting: the transport executor is not built yet"), false
	}
	if err := s.transportProblem(); err != nil {
		return registry.StateReconnecting, err, false
	}
	return registry.StateStreaming, nil, true
}

// record is the instance's registry record.
func (s *Service) record() registry.Record {
	state, _, healthy := s.condition()
	return registry.Record{ListenerID: s.cfg.ListenerID, Host: s.ops.host, PID: os.Getpid(), Version: s.opts.Version,
		State: state, Streaming: state == registry.StateStreaming, Healthy: healthy, Epoch: s.elect.epoch.Load(), StartedAt: s.ops.startedAt}
}

// Ready implements admin.Readiness: ready only while leading with a live stream and
// written checkpoints.
func (s *Service) Ready() error {
	_, err, _ := s.condition()
	return err
}

// Status implements admin.StatusReporter.
func (s *Service) Status(ctx context.Context) (any, error) {
	doc, h, err := CollectStatus(ctx, s.pool, s.cfg, s.settled())
	if err != nil {
		return nil, err
	}
	doc.Source, doc.Version, doc.Role = "service", s.opts.Version, s.elect.role()
	if s.role == RoleExecutor {
		doc.Role = RoleExecutor
	}
	if !s.built.Load() || s.sess == nil {
		if err := s.Ready(); err != nil {
			doc.RoleDetail = err.Error()
		}
		if s.built.Load() {
			doc.Transport = s.transportDoc(ctx)
		}
		return doc, nil
	}
	doc.Transport = s.transportDoc(ctx)
	if rate, ok := s.ops.mon.Rate(); ok {
		h.EstimateInvalidation(rate)
		doc.SlotHealth = SlotFromHealth(h)
		doc.SlotHealth.WALRateKnown = true
	}
	st := s.sess.Status() // read after the server's WAL position: lag is never overstated
	state, ready, _ := s.condition()
	sd := &StreamDoc{State: state, ReceivedLSN: st.ReceivedLSN.String(), SettledLSN: st.SettledLSN.String(),
		ConfirmedLSN: st.ConfirmedLSN.String(), ServerWALEnd: st.ServerWALEnd.String(), LagBytes: h.CurrentWAL.Sub(st.SettledLSN),
		LagSeconds: st.LagSeconds, Reconnects: st.Reconnects, LastError: st.LastError}
	switch {
	case s.pipe != nil:
		sd.InFlightBytes = s.pipe.InFlightBytes()
	case s.pub != nil:
		sd.InFlightBytes = s.pub.InFlightBytes()
	}
	if ready != nil {
		sd.NotReadyReason = ready.Error()
	} else {
		sd.Ready = true
	}
	if !st.LastCommit.IsZero() {
		t := st.LastCommit.UTC().Format(time.RFC3339Nano)
		sd.LastCommitTime = &t
	}
	doc.Stream = sd
	doc.Replay.HeldBytes = s.sess.WindowHeldBytes()
	if s.snaps != nil { // with the running snapshot's rate and ETA
		if doc.Snapshots, err = s.snaps.Unfinished(ctx); err != nil {
			return nil, err
		}
		if doc.Snapshots == nil {
			doc.Snapshots = []snapshot.Info{}
		}
	}
	return doc, nil
}

// settled is the session's settled position, 0 before it is built.
func (s *Service) settled() lsn.LSN {
	if s.built.Load() && s.sess != nil {
		return s.sess.Settled()
	}
	return 0
}

// eventHistory serves /debug/events (admin.EventHistory) from the pipeline's
// history: empty until the pipeline is built.
type eventHistory struct{ s *Service }

func (e eventHistory) RecentEvents(n int) any {
	if !e.s.built.Load() || e.s.pipe == nil {
		return []pipeline.DebugEvent{}
	}
	return e.s.pipe.RecentEvents(n)
}

func (e eventHistory) FindEvent(id string) (any, bool) {
	if !e.s.built.Load() || e.s.pipe == nil {
		return nil, false
	}
	return e.s.pipe.FindEvent(id)
}

// CacheStatsDoc is the /cache/stats document.
type CacheStatsDoc struct {
	RowCache RowCacheDoc `json:"row_cache"`
	Dedup    DedupDoc    `json:"dedup"`
}

// RowCacheDoc is the row cache part of /cache/stats.
type RowCacheDoc struct {
	Enabled   bool    `json:"enabled"`
	Hits      uint64  `json:"hits"`
	Misses    uint64  `json:"misses"`
	HitRate   float64 `json:"hit_rate"`
	Entries   uint64  `json:"entries"`
	CostBytes uint64  `json:"cost_bytes"`
	MaxBytes  int64   `json:"max_bytes"`
	Evicted   uint64  `json:"evicted"`
	Rejected  uint64  `json:"rejected"`
}

// DedupDoc is the deduplication part of /cache/stats.
type DedupDoc struct {
	Enabled           bool   `json:"enabled"`
	Entries           uint64 `json:"entries"`
	MaxEntries        int    `json:"max_entries"`
	DroppedByCache    uint64 `json:"dropped_by_cache"`
	DroppedCheckpoint uint64 `json:"dropped_by_checkpoint"`
}

// CacheStats implements admin.CacheReporter.
func (s *Service) CacheStats() any {
	var doc CacheStatsDoc
	doc.RowCache.Enabled, doc.Dedup.Enabled = s.cfg.Caching.Enabled, s.cfg.Deduplication.Enabled
	if !s.built.Load() {
		return doc
	}
	if s.rows != nil {
		st := s.rows.Stats()
		doc.RowCache = RowCacheDoc{Enabled: true, Hits: st.Hits, Misses: st.Misses, HitRate: st.HitRate, Entries: st.Entries,
			CostBytes: st.CostBytes, MaxBytes: int64(s.cfg.Caching.MaxBytes), Evicted: st.Evicted, Rejected: st.Rejected}
	}
	doc.Dedup.DroppedCheckpoint = s.set.GetOrCreateCounter(`observer_dedup_dropped_total{layer="checkpoint"}`).Get()
	if s.dedup != nil {
		doc.Dedup.Enabled, doc.Dedup.Entries, doc.Dedup.MaxEntries = true, s.dedup.Len(), s.cfg.Deduplication.CacheEntries
		doc.Dedup.DroppedByCache = s.set.GetOrCreateCounter(`observer_dedup_dropped_total{layer="cache"}`).Get()
	}
	return doc
}

// ReplayResult is the answer of POST /replay.
type ReplayResult struct {
	FromLSN string   `json:"from_lsn"`
	ToLSN   string   `json:"to_lsn,omitempty"`
	Actions []string `json:"actions"`
	// Warnings name observers in scope whose conditions read old values that the
	// replayed changes cannot carry.
	Warnings []string `json:"warnings,omitempty"`
}

// Replay implements admin.Replayer.
func (s *Service) Replay(ctx context.Context, req admin.ReplayRequest) (any, error) {
	if s.role == RoleExecutor {
		return nil, &admin.Error{Status: http.StatusConflict, Code: "executor",
			Msg: fmt.Sprintf("this instance (%s) runs --role executor and does not read slot %s: replay on the reader that leads it (%s), which publishes the range to the stream again",
				s.cfg.ListenerID, s.cfg.Source.Slot, s.leaderName(ctx))}
	}
	if !s.elect.leading.Load() {
		_, holder, _ := s.elect.state()
		return nil, &admin.Error{Status: http.StatusConflict, Code: "standby",
			Msg: fmt.Sprintf("this instance (%s) is a standby: replay on the leader (%s)", s.cfg.ListenerID, orNone(holder))}
	}
	if !s.built.Load() {
		return nil, &admin.Error{Status: http.StatusServiceUnavailable, Code: "starting", Msg: "the service is starting: try again once it streams"}
	}
	if req.Observer != "" && !s.hasObserver(req.Observer) {
		return nil, &admin.Error{Status: http.StatusBadRequest, Code: "unknown_observer", Msg: fmt.Sprintf("no observer named %q in the configuration", req.Observer)}
	}
	if req.To != 0 && req.To < req.From {
		return nil, &admin.Error{Status: http.StatusBadRequest, Code: "bad_request", Msg: fmt.Sprintf("--to-lsn %s is before --from-lsn %s", req.To, req.From)}
	}
	if received := s.sess.Status().ReceivedLSN; req.From > received {
		return nil, &admin.Error{Status: http.StatusBadRequest, Code: "bad_request",
			Msg: fmt.Sprintf("cannot replay from %s: it is after the last position received (%s); use start --start-lsn to skip ahead", req.From, received)}
	}
	warnings, err := s.replayOldImageProblems(ctx, req.Observer)
	if err != nil {
		return nil, err
	}
	if len(warnings) > 0 && req.RequireOldImages {
		return nil, &admin.Error{Status: http.StatusConflict, Code: "old_images_unavailable",
			Msg: "refusing to replay (--require-old-images): " + joinSentences(warnings)}
	}
	for _, w := range warnings {
		s.log.Warn().Str("observer", req.Observer).Msg(w)
	}
	ids, err := s.replay(ctx, req.Observer, req.From, req.To)
	var tooOld *cdc.ReplayTooOldError
	if errors.As(err, &tooOld) {
		return nil, &admin.Error{Status: http.StatusConflict, Code: "replay_too_old", Msg: err.Error(),
			Detail: map[string]string{"requested_lsn": tooOld.Requested.String(), "oldest_lsn": tooOld.Oldest.String()}}
	}
	if err != nil {
		return nil, err
	}
	res := ReplayResult{FromLSN: req.From.String(), Actions: ids, Warnings: warnings}
	if req.To != 0 {
		res.ToLSN = req.To.String()
	}
	return res, nil
}

// leaderName names the instance that streams the slot, as the listener registry
// says, or why it is not known.
func (s *Service) leaderName(ctx context.Context) string {
	ls, err := s.ops.reg.List(ctx)
	if err != nil {
		return "unknown: " + err.Error()
	}
	if leader, _, _ := registry.Leader(ls); leader != "" {
		return leader
	}
	return "none streams it now"
}

func (s *Service) hasObserver(name string) bool {
	for _, o := range s.cfg.Observers {
		if o.Name == name {
			return true
		}
	}
	return false
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
