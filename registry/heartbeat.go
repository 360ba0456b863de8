package registry

import (
	"context"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/rs/zerolog"
)

// HeartbeatOptions configures a Heartbeat.
type HeartbeatOptions struct {
	Store *Store
	// Record returns the instance's current record (state, streaming flag, ...); it is
	// called on the heartbeat goroutine.
	Record func() Record
	// Interval between heartbeats (default 5s).
	Interval time.Duration
	Logger   zerolog.Logger
	// Metrics receives observer_listener_health{listener_id}.
	Metrics *metrics.Set
}

// Heartbeat writes the instance's record every interval and exports
// observer_listener_health: 1 while the record says the instance is healthy and its
// last heartbeat was stored, else 0.
type Heartbeat struct {
	opts   HeartbeatOptions
	ok     atomic.Bool
	record atomic.Pointer[Record]
}

// NewHeartbeat returns a Heartbeat; it starts no goroutine.
func NewHeartbeat(opts HeartbeatOptions) *Heartbeat {
	if opts.Interval <= 0 {
		opts.Interval = 5 * time.Second
	}
	h := &Heartbeat{opts: opts}
	if opts.Metrics != nil {
		id := opts.Record().ListenerID
		opts.Metrics.GetOrCreateGauge(`observer_listener_health{listener_id=`+strconv.Quote(id)+`}`, func() float64 {
			if h.Healthy() {
				return 1
			}
			return 0
		})
	}
	return h
}

// Interval returns the heartbeat period.
func (h *Heartbeat) Interval() time.Duration { return h.opts.Interval }

// Healthy reports what observer_listener_health exports.
func (h *Heartbeat) Healthy() bool {
	r := h.record.Load()
	return r != nil && r.Healthy && h.ok.Load()
}

// Beat writes the current record now.
func (h *Heartbeat) Beat(ctx context.Context) error {
	r := h.opts.Record()
	r.Interval = h.opts.Interval
	h.record.Store(&r)
	cctx, cancel := context.WithTimeout(ctx, max(h.opts.Interval, 5*time.Second))
	defer cancel()
	err := h.opts.Store.Upsert(cctx, r)
	h.ok.Store(err == nil)
	return err
}

// changed reports whether the instance's state differs from the last record written.
func (h *Heartbeat) changed() bool {
	last := h.record.Load()
	if last == nil || !h.ok.Load() {
		return true
	}
	r := h.opts.Record()
	return r.State != last.State || r.Streaming != last.Streaming || r.Healthy != last.Healthy
}

// Run beats every interval, and within a quarter of a second of a change of state,
// until ctx is cancelled. A failed write is logged once per outage and retried.
func (h *Heartbeat) Run(ctx context.Context) error {
	poll := time.NewTicker(min(h.opts.Interval, 250*time.Millisecond))
	defer poll.Stop()
	failing := false
	var next time.Time
	for {
		if !time.Now().Before(next) || (!failing && h.changed()) {
			next = time.Now().Add(h.opts.Interval)
			err := h.Beat(ctx)
			if ctx.Err() != nil {
				return nil
			}
			switch {
			case err != nil && !failing:
				h.opts.Logger.Warn().Err(err).Msg("listener heartbeat failed; will retry")
				failing = true
			case err == nil && failing:
				h.opts.Logger.Info().Msg("listener heartbeat recovered")
				failing = false
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-poll.C:
		}
	}
}
