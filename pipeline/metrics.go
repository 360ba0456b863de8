package pipeline

import (
	"fmt"
	"strconv"
	"sync"

	"github.com/VictoriaMetrics/metrics"
)

// pipelineMetrics are the stage-wide metrics. Names follow the seed deployment guide
// (observer_*); labels never carry row values.
type pipelineMetrics struct {
	processed       *metrics.Counter
	matched         *metrics.Counter
	conditionErrors *metrics.Counter
	processing      *metrics.PrometheusHistogram
}

// gaugeMu serialises replacing observer_inflight_bytes in a metric set.
var gaugeMu sync.Mutex

func newPipelineMetrics(set *metrics.Set, p *Pipeline) *pipelineMetrics {
	lid := label("listener_id", p.opts.ListenerID)
	// The latest pipeline built on a set is the one that runs: an executor builds one
	// per generation of partitions, each after the last stopped. GetOrCreate would
	// keep reading the first, stopped pipeline.
	gaugeMu.Lock()
	set.UnregisterMetric("observer_inflight_bytes")
	set.NewGauge("observer_inflight_bytes", func() float64 { return float64(p.inflight.Load()) })
	gaugeMu.Unlock()
	return &pipelineMetrics{
		processed:       set.GetOrCreateCounter("observer_events_processed_total" + lid),
		matched:         set.GetOrCreateCounter("observer_events_matched_total" + lid),
		conditionErrors: set.GetOrCreateCounter("observer_condition_errors_total" + lid),
		processing:      set.GetOrCreatePrometheusHistogramExt("observer_event_processing_duration_seconds", durationBuckets),
	}
}

// actionMetrics are per action type, as in the seed, plus per-action detail.
type actionMetrics struct {
	executed        *metrics.Counter
	failed          *metrics.Counter
	retries         *metrics.Counter
	dlq             *metrics.Counter
	dlqWriteErrors  *metrics.Counter
	alerts          *metrics.Counter
	dedupCheckpoint *metrics.Counter
	dedupCache      *metrics.Counter
	duration        *metrics.PrometheusHistogram
	latency         *metrics.PrometheusHistogram
}

func newActionMetrics(set *metrics.Set, a *Action) *actionMetrics {
	t := label("action_type", a.Type)
	return &actionMetrics{
		executed:        set.GetOrCreateCounter("observer_actions_executed_total" + t),
		failed:          set.GetOrCreateCounter("observer_actions_failed_total" + t),
		retries:         set.GetOrCreateCounter("observer_action_retries_total" + t),
		dlq:             set.GetOrCreateCounter("observer_dlq_writes_total" + t),
		dlqWriteErrors:  set.GetOrCreateCounter("observer_dlq_write_errors_total" + t),
		alerts:          set.GetOrCreateCounter("observer_failure_alerts_total" + t),
		dedupCheckpoint: set.GetOrCreateCounter(`observer_dedup_dropped_total{layer="checkpoint"}`),
		dedupCache:      set.GetOrCreateCounter(`observer_dedup_dropped_total{layer="cache"}`),
		duration:        set.GetOrCreatePrometheusHistogramExt("observer_action_duration_seconds"+t, durationBuckets),
		latency:         set.GetOrCreatePrometheusHistogramExt("observer_delivery_latency_seconds"+t, durationBuckets),
	}
}

// durationBuckets are the upper bounds of the duration histograms: 0.5 ms doubling up
// to about 16 s, then 30 s and 60 s — fine enough for local sinks answering in well
// under a millisecond, wide enough for slow webhooks and retries.
var durationBuckets = append(metrics.ExponentialBuckets(0.0005, 2, 16), 30, 60)

// label formats one Prometheus label selector.
func label(name, value string) string {
	return fmt.Sprintf("{%s=%s}", name, strconv.Quote(value))
}
