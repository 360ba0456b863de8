package sinktest

import (
	"context"
	"os"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/fraiseql/fraiseql-observers/decoder"
	"github.com/fraiseql/fraiseql-observers/lsn"
	"github.com/fraiseql/fraiseql-observers/pipeline"
)

// BenchEvents returns the number of events a sink benchmark delivers per
// iteration: SINK_BENCH_EVENTS, or def when it is unset.
func BenchEvents(tb testing.TB, def int) int {
	s := os.Getenv("SINK_BENCH_EVENTS")
	if s == "" {
		return def
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		tb.Fatalf("SINK_BENCH_EVENTS=%q: want a positive integer", s)
	}
	return n
}

// Copies returns new events holding what Events sets in evs (the rows are shared)
// and nothing a delivery left behind, such as the cached JSON or the dispatch
// ticket: a benchmark iteration delivers them as if for the first time.
func Copies(evs []*decoder.Event) []*decoder.Event {
	out := make([]*decoder.Event, len(evs))
	for i, ev := range evs {
		out[i] = &decoder.Event{ID: ev.ID, LSN: ev.LSN, Xid: ev.Xid, CommitTime: ev.CommitTime,
			Schema: ev.Schema, Table: ev.Table, Op: ev.Op, Key: ev.Key, New: ev.New}
	}
	return out
}

// timedSink records how long each delivery call takes.
type timedSink struct {
	inner pipeline.BatchSink
	mu    sync.Mutex
	durs  []time.Duration
	fails int
}

func (s *timedSink) Deliver(ctx context.Context, ev *decoder.Event) error {
	start := time.Now()
	err := s.inner.Deliver(ctx, ev)
	s.record(time.Since(start), err != nil)
	return err
}

func (s *timedSink) DeliverBatch(ctx context.Context, evs []*decoder.Event, errs []error) {
	start := time.Now()
	s.inner.DeliverBatch(ctx, evs, errs)
	failed := false
	for _, err := range errs {
		failed = failed || err != nil
	}
	s.record(time.Since(start), failed)
}

func (s *timedSink) record(d time.Duration, failed bool) {
	s.mu.Lock()
	s.durs = append(s.durs, d)
	if failed {
		s.fails++
	}
	s.mu.Unlock()
}

// BenchDeliver delivers n events (over keys rows) b.N times through a real pipeline
// into sink and reports events/s and p99-ms, the 99th percentile of one delivery
// call (a batch of up to o.BatchSize events). Failed deliveries fail the benchmark.
func BenchDeliver(b *testing.B, sink pipeline.BatchSink, n, keys int, o RunOptions) {
	b.Helper()
	ts := &timedSink{inner: sink}
	var elapsed time.Duration
	for iter := range b.N {
		b.StopTimer()
		// Fresh ids each iteration: sinks that deduplicate by id store them all.
		evs := Events(n, keys)
		for _, ev := range evs {
			ev.ID.Commit += lsn.LSN(uint64(iter+1) << 32)
			ev.JSON() // encoded once by the decoder in the service, not by the sink
		}
		b.StartTimer()
		start := time.Now()
		if dlq := Run(b, ts, evs, o); len(dlq.Snapshot()) > 0 {
			b.Fatalf("dead letters in a benchmark: %v", dlq.Snapshot()[0].Err)
		}
		elapsed += time.Since(start)
	}
	b.StopTimer()
	if ts.fails > 0 {
		b.Fatalf("%d delivery calls failed", ts.fails)
	}
	slices.Sort(ts.durs)
	p99 := ts.durs[len(ts.durs)*99/100]
	b.ReportMetric(float64(n*b.N)/elapsed.Seconds(), "events/s")
	b.ReportMetric(float64(p99.Microseconds())/1000, "p99-ms")
	b.ReportMetric(float64(n*b.N)/float64(len(ts.durs)), "events/call")
}
