package cdc

import (
	"time"

	"github.com/VictoriaMetrics/metrics"
)

// sessionMetrics are the replication-side metrics; LSNs are exported as byte
// positions (float64 is exact up to 2^53 bytes of WAL).
type sessionMetrics struct {
	reconnects   *metrics.Counter
	events       *metrics.Counter
	transactions *metrics.Counter
	poison       *metrics.Counter
	heartbeats   *metrics.Counter
}

func newSessionMetrics(set *metrics.Set, s *Session) *sessionMetrics {
	set.GetOrCreateGauge("observer_replication_received_lsn", func() float64 { return float64(s.received.Load()) })
	set.GetOrCreateGauge("observer_replication_confirmed_lsn", func() float64 { return float64(s.confirmed.Load()) })
	set.GetOrCreateGauge("observer_replication_server_wal_end_lsn", func() float64 { return float64(s.serverWALEnd.Load()) })
	set.GetOrCreateGauge("observer_replication_connected", func() float64 {
		if s.connected.Load() {
			return 1
		}
		return 0
	})
	set.GetOrCreateGauge("observer_replication_settled_lsn", func() float64 { return float64(s.Settled()) })
	set.GetOrCreateGauge("observer_replication_lag_seconds", func() float64 { return s.LagSeconds(time.Now()) })
	set.GetOrCreateGauge("observer_replay_window_held_bytes", func() float64 { return float64(s.window.held.Load()) })
	return &sessionMetrics{
		reconnects:   set.GetOrCreateCounter("observer_replication_reconnects_total"),
		events:       set.GetOrCreateCounter("observer_replication_events_received_total"),
		transactions: set.GetOrCreateCounter("observer_replication_transactions_received_total"),
		poison:       set.GetOrCreateCounter("observer_undeliverable_changes_total"),
		heartbeats:   set.GetOrCreateCounter("observer_heartbeats_received_total"),
	}
}
