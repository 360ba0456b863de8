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

// BenchOptions configures Bench. Zero values mean: SINK_BENCH_EVENTS events (20000
// when unset), batches of 100, 4 concurrent workers.
type BenchOptions struct {
	Events  int
	Batch   int
	Workers int
}

// BenchEvents returns the number of events a sink benchmark delivers per iteration:
// the SINK_BENCH_EVENTS environment variable, or 20000.
func BenchEvents() int {
	if n, err := strconv.Atoi(os.Getenv("SINK_BENCH_EVENTS")); err == nil && n > 0 {
		return n
	}
	return 20000
}

// Bench delivers o.Events fresh events per iteration (new event ids each time, so
// sinks that deduplicate by id store them all) through sink.DeliverBatch from
// o.Workers goroutines in batches of o.Batch, and reports events/s and the 99th
// percentile latency of one batch delivery in milliseconds (p99-ms). Any delivery
// error fails the benchmark.
func Bench(b *testing.B, sink pipeline.BatchSink, o BenchOptions) {
	b.Helper()
	if o.Events == 0 {
		o.Events = BenchEvents()
	}
	if o.Batch == 0 {
		o.Batch = 100
	}
	if o.Workers == 0 {
		o.Workers = 4
	}
	var lat []time.Duration
	var mu sync.Mutex
	var elapsed time.Duration
	for iter := 0; iter < b.N; iter++ {
		b.StopTimer()
		evs := Events(o.Events, o.Events)
		for _, ev := range evs {
			ev.ID.Commit += lsn.LSN(uint64(iter+1) << 32) // ids unique across iterations and runs of one process
			ev.JSON()
		}
		batches := make(chan []*decoder.Event, o.Events/o.Batch+1)
		for i := 0; i < len(evs); i += o.Batch {
			batches <- evs[i:min(i+o.Batch, len(evs))]
		}
		close(batches)
		b.StartTimer()
		start := time.Now()
		var wg sync.WaitGroup
		var failed error
		for range o.Workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs := make([]error, o.Batch)
				for batch := range batches {
					t0 := time.Now()
					sink.DeliverBatch(context.Background(), batch, errs[:len(batch)])
					d := time.Since(t0)
					mu.Lock()
					lat = append(lat, d)
					for _, err := range errs[:len(batch)] {
						if err != nil && failed == nil {
							failed = err
						}
					}
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		elapsed += time.Since(start)
		if failed != nil {
			b.Fatalf("delivery failed: %v", failed)
		}
	}
	slices.Sort(lat)
	p99 := lat[min(len(lat)-1, len(lat)*99/100)]
	b.ReportMetric(float64(o.Events*b.N)/elapsed.Seconds(), "events/s")
	b.ReportMetric(float64(p99.Microseconds())/1000, "p99-ms")
	b.ReportMetric(0, "ns/op")
}
