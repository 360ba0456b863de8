package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/fraiseql/fraiseql-observers/admin"
	"github.com/fraiseql/fraiseql-observers/cdc"
	"github.com/fraiseql/fraiseql-observers/registry"
)

// operator is the service's operator surface: listener heartbeats, the slot monitor,
// the DLQ size refresh and the admin endpoint.
type operator struct {
	reg       *registry.Store
	hb        *registry.Heartbeat
	mon       *cdc.Monitor
	adm       *admin.Server
	admLn     net.Listener
	epoch     int64
	startedAt time.Time
	host      string
	draining  bool // guarded by mu
	stopped   bool // guarded by mu
	mu        sync.Mutex
}

// opsInterval is the period of heartbeats, slot readings and DLQ size refreshes.
func (s *service) opsInterval() time.Duration {
	return min(s.cfg.Source.StatusInterval, 5*time.Second)
}

// buildOperator prepares the operator surface; the admin socket is opened now so that
// a busy port is reported before streaming starts.
func (s *service) buildOperator(ctx context.Context) error {
	cfg := s.cfg
	op := &s.ops
	op.startedAt = time.Now()
	op.host, _ = os.Hostname()
	op.reg = registry.NewStore(s.pool, cfg.State.Schema, cfg.Source.Slot)
	if err := op.reg.Migrate(ctx); err != nil {
		return preflightDB(err)
	}
	op.hb = registry.NewHeartbeat(registry.HeartbeatOptions{Store: op.reg, Record: s.record, Interval: s.opsInterval(),
		Logger: s.log, Metrics: s.set})
	op.mon = cdc.NewMonitor(cdc.MonitorOptions{DB: s.pool, Slot: cfg.Source.Slot, Settled: s.sess.Settled,
		Interval: s.opsInterval(), Logger: s.log, Metrics: s.set})
	if cfg.Admin.Listen == "" {
		return nil
	}
	var err error
	op.adm, err = admin.New(admin.Options{Listen: cfg.Admin.Listen, Token: cfg.Admin.Token.Value(),
		TLSCertFile: cfg.Admin.TLSCertFile, TLSKeyFile: cfg.Admin.TLSKeyFile, Metrics: s.set,
		Ready: s, Status: s, Events: s.pipe, Cache: s, Replay: s, Logger: s.log})
	if err != nil {
		return err
	}
	if op.admLn, err = op.adm.Listen(); err != nil {
		return err
	}
	s.log.Info().Str("listen", op.admLn.Addr().String()).Bool("token", cfg.Admin.Token.IsSet()).Msg("admin endpoint listening")
	return nil
}

// runOperator starts the operator goroutines; the returned function stops them and
// waits for them.
func (s *service) runOperator(ctx context.Context) (stop func()) {
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
	goRun(s.ops.hb.Run)
	goRun(s.ops.mon.Run)
	if s.dlq != nil {
		goRun(s.refreshDLQSize)
	}
	if s.ops.adm != nil {
		ln := s.ops.admLn
		s.ops.admLn = nil
		goRun(func(ctx context.Context) error { return s.ops.adm.Serve(ctx, ln) })
	}
	return func() {
		cancel()
		wg.Wait()
	}
}

// refreshDLQSize keeps observer_dlq_items_total current while dlq commands change the
// table from other processes.
func (s *service) refreshDLQSize(ctx context.Context) error {
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
func (s *service) setDraining(ctx context.Context) {
	s.ops.mu.Lock()
	s.ops.draining = true
	s.ops.mu.Unlock()
	s.beat(ctx)
}

// setStopped records the clean end of the instance in the registry.
func (s *service) setStopped(ctx context.Context) {
	s.ops.mu.Lock()
	s.ops.stopped = true
	s.ops.mu.Unlock()
	s.beat(ctx)
}

func (s *service) beat(ctx context.Context) {
	if s.ops.hb == nil {
		return
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := s.ops.hb.Beat(cctx); err != nil {
		s.log.Warn().Err(err).Msg("listener heartbeat failed")
	}
}

// state returns the instance's state for the registry.
func (s *service) state() string {
	s.ops.mu.Lock()
	draining, stopped := s.ops.draining, s.ops.stopped
	s.ops.mu.Unlock()
	st := s.sess.Status()
	switch {
	case stopped:
		return registry.StateStopped
	case draining:
		return registry.StateDraining
	case st.Connected:
		return registry.StateStreaming
	case st.Reconnects > 0:
		return registry.StateReconnecting
	}
	return registry.StateStarting
}

// record is the instance's registry record.
func (s *service) record() registry.Record {
	state := s.state()
	return registry.Record{ListenerID: s.cfg.ListenerID, Host: s.ops.host, PID: os.Getpid(), Version: buildVersion(),
		State: state, Streaming: state == registry.StateStreaming, Epoch: s.ops.epoch, StartedAt: s.ops.startedAt}
}

// Ready implements admin.Readiness: ready only while streaming.
func (s *service) Ready() error {
	switch s.state() {
	case registry.StateStreaming:
		return nil
	case registry.StateReconnecting:
		return errors.New("reconnecting to PostgreSQL after the replication connection was lost")
	case registry.StateDraining, registry.StateStopped:
		return errors.New("shutting down")
	}
	return errors.New("starting: the replication connection is not up yet")
}

// Status implements admin.StatusReporter.
func (s *service) Status(ctx context.Context) (any, error) {
	doc, h, err := collectStatus(ctx, s.pool, s.cfg, s.sess.Settled())
	if err != nil {
		return nil, err
	}
	doc.Source, doc.Version = "service", buildVersion()
	if rate, ok := s.ops.mon.Rate(); ok {
		h.EstimateInvalidation(rate)
		doc.SlotHealth = slotFromHealth(h)
		doc.SlotHealth.WALRateKnown = true
	}
	st := s.sess.Status() // read after the server's WAL position: lag is never overstated
	sd := &streamDoc{State: s.state(), ReceivedLSN: st.ReceivedLSN.String(), SettledLSN: st.SettledLSN.String(),
		ConfirmedLSN: st.ConfirmedLSN.String(), ServerWALEnd: st.ServerWALEnd.String(), LagBytes: h.CurrentWAL.Sub(st.SettledLSN),
		LagSeconds: st.LagSeconds, Reconnects: st.Reconnects, LastError: st.LastError, InFlightBytes: s.pipe.InFlightBytes()}
	if err := s.Ready(); err != nil {
		sd.NotReadyReason = err.Error()
	} else {
		sd.Ready = true
	}
	if !st.LastCommit.IsZero() {
		t := st.LastCommit.UTC().Format(time.RFC3339Nano)
		sd.LastCommitTime = &t
	}
	doc.Stream = sd
	doc.Replay.HeldBytes = s.sess.WindowHeldBytes()
	return doc, nil
}

// cacheStatsDoc is the /cache/stats document.
type cacheStatsDoc struct {
	RowCache rowCacheDoc `json:"row_cache"`
	Dedup    dedupDoc    `json:"dedup"`
}

type rowCacheDoc struct {
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

type dedupDoc struct {
	Enabled           bool   `json:"enabled"`
	Entries           uint64 `json:"entries"`
	MaxEntries        int    `json:"max_entries"`
	DroppedByCache    uint64 `json:"dropped_by_cache"`
	DroppedCheckpoint uint64 `json:"dropped_by_checkpoint"`
}

// CacheStats implements admin.CacheReporter.
func (s *service) CacheStats() any {
	var doc cacheStatsDoc
	if s.rows != nil {
		st := s.rows.Stats()
		doc.RowCache = rowCacheDoc{Enabled: true, Hits: st.Hits, Misses: st.Misses, HitRate: st.HitRate, Entries: st.Entries,
			CostBytes: st.CostBytes, MaxBytes: int64(s.cfg.Caching.MaxBytes), Evicted: st.Evicted, Rejected: st.Rejected}
	}
	doc.Dedup.DroppedCheckpoint = s.set.GetOrCreateCounter(`observer_dedup_dropped_total{layer="checkpoint"}`).Get()
	if s.dedup != nil {
		doc.Dedup.Enabled, doc.Dedup.Entries, doc.Dedup.MaxEntries = true, s.dedup.Len(), s.cfg.Deduplication.CacheEntries
		doc.Dedup.DroppedByCache = s.set.GetOrCreateCounter(`observer_dedup_dropped_total{layer="cache"}`).Get()
	}
	return doc
}

// replayResult is the answer of POST /replay.
type replayResult struct {
	FromLSN string   `json:"from_lsn"`
	ToLSN   string   `json:"to_lsn,omitempty"`
	Actions []string `json:"actions"`
}

// Replay implements admin.Replayer.
func (s *service) Replay(ctx context.Context, req admin.ReplayRequest) (any, error) {
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
	ids, err := s.replay(ctx, req.Observer, req.From, req.To)
	var tooOld *cdc.ReplayTooOldError
	if errors.As(err, &tooOld) {
		return nil, &admin.Error{Status: http.StatusConflict, Code: "replay_too_old", Msg: err.Error(),
			Detail: map[string]string{"requested_lsn": tooOld.Requested.String(), "oldest_lsn": tooOld.Oldest.String()}}
	}
	if err != nil {
		return nil, err
	}
	res := replayResult{FromLSN: req.From.String(), Actions: ids}
	if req.To != 0 {
		res.ToLSN = req.To.String()
	}
	return res, nil
}

func (s *service) hasObserver(name string) bool {
	for _, o := range s.cfg.Observers {
		if o.Name == name {
			return true
		}
	}
	return false
}
