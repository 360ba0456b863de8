package transport

import (
	"strconv"

	"github.com/VictoriaMetrics/metrics"
)

// The transport's metrics are named observer_transport_* (docs/metrics.md lists
// them). The only label besides the fencing kind is partition, a number below
// partitions; no label carries row values.

// durationBuckets are the upper bounds of the publish latency histogram, as the
// pipeline's: 0.5 ms doubling up to about 16 s, then 30 s and 60 s.
var durationBuckets = append(metrics.ExponentialBuckets(0.0005, 2, 16), 30, 60)

// publisherMetrics are the reader side's.
type publisherMetrics struct {
	latency    *metrics.PrometheusHistogram
	published  *metrics.Counter
	duplicates *metrics.Counter
	replayed   *metrics.Counter
	failures   *metrics.Counter
	resyncs    *metrics.Counter
	stream     *metrics.Gauge
	streamErrs *metrics.Counter
}

func newPublisherMetrics(set *metrics.Set, p *Publisher) publisherMetrics {
	if set == nil {
		set = metrics.NewSet()
	}
	set.GetOrCreateGauge(`observer_transport_publish_pending`, func() float64 { return float64(p.Outstanding()) })
	set.GetOrCreateGauge(`observer_transport_available`, func() float64 {
		if p.Available() {
			return 1
		}
		return 0
	})
	return publisherMetrics{
		latency:    set.GetOrCreatePrometheusHistogramExt(`observer_transport_publish_duration_seconds`, durationBuckets),
		published:  set.GetOrCreateCounter(`observer_transport_published_total`),
		duplicates: set.GetOrCreateCounter(`observer_transport_publish_duplicates_total`),
		replayed:   set.GetOrCreateCounter(`observer_transport_replayed_total`),
		failures:   set.GetOrCreateCounter(`observer_transport_publish_failures_total`),
		resyncs:    set.GetOrCreateCounter(`observer_transport_publish_resyncs_total`),
		stream:     set.GetOrCreateGauge(`observer_transport_stream_messages`, nil),
		streamErrs: set.GetOrCreateCounter(`observer_transport_backlog_errors_total`),
	}
}

// executorMetrics are an executor's. The backlog gauges exist for the partitions
// the executor serves: a partition's series moves with the partition.
type executorMetrics struct {
	set              *metrics.Set
	rebalances       *metrics.Counter
	claimed          *metrics.Counter
	released         *metrics.Counter
	lost             *metrics.Counter
	fencedAcks       *metrics.Counter
	dedupDropped     *metrics.Counter
	positionErrs     *metrics.Counter
	fencedDel        *metrics.Counter
	missedHeartbeats *metrics.Counter
	backlogErrs      *metrics.Counter
}

func newExecutorMetrics(set *metrics.Set, owned func() []int) executorMetrics {
	if set == nil {
		set = metrics.NewSet()
	}
	set.GetOrCreateGauge(`observer_transport_owned_partitions`, func() float64 { return float64(len(owned())) })
	return executorMetrics{
		set:              set,
		rebalances:       set.GetOrCreateCounter(`observer_transport_rebalances_total`),
		claimed:          set.GetOrCreateCounter(`observer_transport_partitions_claimed_total`),
		released:         set.GetOrCreateCounter(`observer_transport_partitions_released_total`),
		lost:             set.GetOrCreateCounter(`observer_transport_partitions_lost_total`),
		fencedAcks:       set.GetOrCreateCounter(`observer_transport_fenced_total{what="ack"}`),
		dedupDropped:     set.GetOrCreateCounter(`observer_dedup_dropped_total{layer="checkpoint"}`),
		positionErrs:     set.GetOrCreateCounter(`observer_transport_position_errors_total`),
		fencedDel:        set.GetOrCreateCounter(`observer_transport_fenced_total{what="deliver"}`),
		missedHeartbeats: set.GetOrCreateCounter(`observer_transport_pull_heartbeats_missed_total`),
		backlogErrs:      set.GetOrCreateCounter(`observer_transport_backlog_errors_total`),
	}
}

func backlogNames(p int) (pending, ackPending string) {
	l := `{partition="` + strconv.Itoa(p) + `"}`
	return `observer_transport_backlog_pending` + l, `observer_transport_backlog_ack_pending` + l
}

// setBacklog records partition p's backlog.
func (m executorMetrics) setBacklog(p int, b Backlog) {
	pending, ack := backlogNames(p)
	m.set.GetOrCreateGauge(pending, nil).Set(float64(b.Pending))
	m.set.GetOrCreateGauge(ack, nil).Set(float64(b.AckPending))
}

// dropBacklog removes partition p's backlog series (the partition left).
func (m executorMetrics) dropBacklog(p int) {
	pending, ack := backlogNames(p)
	m.set.UnregisterMetric(pending)
	m.set.UnregisterMetric(ack)
}
