package cdc

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/rs/zerolog"

	"github.com/fraiseql/fraiseql-observers/lsn"
)

// WALStatuses are the values of pg_replication_slots.wal_status, in order of danger.
var WALStatuses = []string{"reserved", "extended", "unreserved", "lost"}

// SlotHealth is one reading of the slot and the server's WAL position.
type SlotHealth struct {
	At         time.Time `json:"at"`
	CurrentWAL lsn.LSN   `json:"current_wal_lsn"`
	Slot       SlotInfo  `json:"slot"`
	// LagBytes is CurrentWAL minus the settled position: WAL not yet handled. Only a
	// running service knows its settled position; 0 otherwise.
	LagBytes uint64 `json:"lag_bytes"`
	// ConfirmedLagBytes is CurrentWAL minus the slot's confirmed_flush_lsn: WAL the
	// server would send again after a restart (checkpoint interval, replay window).
	ConfirmedLagBytes uint64 `json:"confirmed_lag_bytes"`
	// RetainedBytes is CurrentWAL minus the slot's restart_lsn: WAL kept on the
	// server's disk for this slot.
	RetainedBytes uint64 `json:"retained_bytes"`
	// WALRate is the server's WAL write rate in bytes per second over the last minute
	// (0 until two readings exist).
	WALRate float64 `json:"wal_rate_bytes_per_second"`
	// TimeToInvalidation estimates when the slot would be invalidated at WALRate if
	// nothing were confirmed: safe_wal_size / WALRate. Nil when safe_wal_size is
	// unlimited (max_slot_wal_keep_size = -1) or the rate is 0.
	TimeToInvalidation *time.Duration `json:"-"`
}

// TimeToInvalidationSeconds returns TimeToInvalidation in seconds, or nil.
func (h SlotHealth) TimeToInvalidationSeconds() *float64 {
	if h.TimeToInvalidation == nil {
		return nil
	}
	v := h.TimeToInvalidation.Seconds()
	return &v
}

// ReadSlotHealth reads the slot and pg_current_wal_lsn() once; settled is the running
// service's settled position (0 when unknown: LagBytes is then 0).
func ReadSlotHealth(ctx context.Context, db Querier, slot string, settled lsn.LSN) (SlotHealth, error) {
	var h SlotHealth
	var cur string
	if err := db.QueryRow(ctx, "SELECT pg_current_wal_lsn()::text").Scan(&cur); err != nil {
		return h, fmt.Errorf("read current WAL position: %w", err)
	}
	h.At = time.Now()
	var err error
	if h.CurrentWAL, err = lsn.Parse(cur); err != nil {
		return h, err
	}
	if h.Slot, err = ReadSlot(ctx, db, slot); err != nil {
		return h, fmt.Errorf("read slot: %w", err)
	}
	if settled != 0 {
		h.LagBytes = h.CurrentWAL.Sub(min(settled, h.CurrentWAL))
	}
	if h.Slot.Exists {
		h.ConfirmedLagBytes = h.CurrentWAL.Sub(min(h.Slot.ConfirmedFlushLSN, h.CurrentWAL))
		h.RetainedBytes = h.CurrentWAL.Sub(min(h.Slot.RestartLSN, h.CurrentWAL))
	}
	return h, nil
}

// EstimateInvalidation fills TimeToInvalidation from the slot's safe_wal_size and rate.
func (h *SlotHealth) EstimateInvalidation(rate float64) {
	h.WALRate = rate
	h.TimeToInvalidation = nil
	if h.Slot.SafeWALSize != nil && rate > 0 {
		d := time.Duration(float64(max(*h.Slot.SafeWALSize, 0)) / rate * float64(time.Second))
		h.TimeToInvalidation = &d
	}
}

// MonitorOptions configures a Monitor.
type MonitorOptions struct {
	DB   Querier // required
	Slot string  // required
	// Settled reports the service's settled position (the session's Settled).
	Settled func() lsn.LSN
	// Interval between readings (default 5s).
	Interval time.Duration
	Logger   zerolog.Logger
	Metrics  *metrics.Set
}

// Monitor reads the slot's health periodically and exports it as gauges:
// observer_replication_lag_bytes, observer_slot_confirmed_lag_bytes,
// observer_replication_retained_bytes, observer_slot_wal_status{status},
// observer_slot_safe_wal_size_bytes, observer_wal_rate_bytes_per_second,
// observer_slot_active. Health is safe for concurrent use.
type Monitor struct {
	opts      MonitorOptions
	mu        sync.Mutex
	health    SlotHealth
	rateKnown bool
	samples   []walSample // for the WAL rate, oldest first, about a minute
	errs      *metrics.Counter
}

type walSample struct {
	at  time.Time
	pos lsn.LSN
}

// NewMonitor returns a Monitor; it starts no goroutine.
func NewMonitor(opts MonitorOptions) *Monitor {
	if opts.Interval <= 0 {
		opts.Interval = 5 * time.Second
	}
	if opts.Settled == nil {
		opts.Settled = func() lsn.LSN { return 0 }
	}
	set := opts.Metrics
	if set == nil {
		set = metrics.NewSet()
	}
	m := &Monitor{opts: opts, errs: set.GetOrCreateCounter("observer_slot_monitor_errors_total")}
	g := func(name string, f func(h *SlotHealth) float64) {
		set.GetOrCreateGauge(name, func() float64 {
			m.mu.Lock()
			defer m.mu.Unlock()
			return f(&m.health)
		})
	}
	g("observer_replication_lag_bytes", func(h *SlotHealth) float64 { return float64(h.LagBytes) })
	g("observer_slot_confirmed_lag_bytes", func(h *SlotHealth) float64 { return float64(h.ConfirmedLagBytes) })
	g("observer_replication_retained_bytes", func(h *SlotHealth) float64 { return float64(h.RetainedBytes) })
	g("observer_wal_rate_bytes_per_second", func(h *SlotHealth) float64 { return h.WALRate })
	g("observer_server_wal_lsn", func(h *SlotHealth) float64 { return float64(h.CurrentWAL) })
	g("observer_slot_safe_wal_size_bytes", func(h *SlotHealth) float64 {
		if h.Slot.SafeWALSize == nil {
			return -1
		}
		return float64(*h.Slot.SafeWALSize)
	})
	g("observer_slot_active", func(h *SlotHealth) float64 { return b2f(h.Slot.Active) })
	for _, st := range WALStatuses {
		g(`observer_slot_wal_status{status="`+st+`"}`, func(h *SlotHealth) float64 { return b2f(h.Slot.WALStatus == st) })
	}
	return m
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// Health returns the last reading (zero before the first).
func (m *Monitor) Health() SlotHealth {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.health
}

// Rate returns the WAL rate of the last reading and whether it is known (two
// readings are needed).
func (m *Monitor) Rate() (float64, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.health.WALRate, m.rateKnown
}

// Sample takes one reading now and stores it.
func (m *Monitor) Sample(ctx context.Context) (SlotHealth, error) {
	cctx, cancel := context.WithTimeout(ctx, max(m.opts.Interval, 5*time.Second))
	defer cancel()
	h, err := ReadSlotHealth(cctx, m.opts.DB, m.opts.Slot, m.opts.Settled())
	if err != nil {
		m.errs.Inc()
		return h, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.samples = append(m.samples, walSample{h.At, h.CurrentWAL})
	i := 0
	for i < len(m.samples)-2 && h.At.Sub(m.samples[i+1].at) >= time.Minute {
		i++
	}
	m.samples = m.samples[i:]
	rate := 0.0
	if first := m.samples[0]; len(m.samples) > 1 && h.At.After(first.at) && h.CurrentWAL >= first.pos {
		rate = float64(h.CurrentWAL.Sub(first.pos)) / h.At.Sub(first.at).Seconds()
		m.rateKnown = true
	}
	h.EstimateInvalidation(rate)
	m.health = h
	return h, nil
}

// Run samples every interval until ctx is cancelled. Failed readings are counted in
// observer_slot_monitor_errors_total and logged once per outage.
func (m *Monitor) Run(ctx context.Context) error {
	t := time.NewTicker(m.opts.Interval)
	defer t.Stop()
	failing := false
	for {
		if _, err := m.Sample(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if !failing {
				m.opts.Logger.Warn().Err(err).Str("slot", m.opts.Slot).Msg("slot health reading failed; will retry")
			}
			failing = true
		} else {
			failing = false
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}
