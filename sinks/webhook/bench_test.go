package webhook

import (
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/fraiseql/fraiseql-observers/configs"
	"github.com/fraiseql/fraiseql-observers/decoder"
	"github.com/fraiseql/fraiseql-observers/internal/sinktest"
	"github.com/fraiseql/fraiseql-observers/sinks"
)

// BenchmarkDeliver sends SINK_BENCH_EVENTS events (default 20000) per iteration to a
// loopback HTTP receiver that answers 200 at once, from 16 concurrent workers (the
// pipeline's workers), one event per request and in batches of 100. It reports
// events/s and the 99th percentile of the time one event took to be acknowledged
// (the duration of the Deliver or DeliverBatch call that carried it). Requests are
// signed (fraiseql format), as in production.
func BenchmarkDeliver(b *testing.B) {
	n := sinktest.BenchEvents(b, 20000)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
	}))
	defer srv.Close()
	evs := sinktest.Events(n, n)
	for _, ev := range evs {
		ev.JSON() // encoded by the decoder before it reaches a sink
	}
	for _, batch := range []int{1, 100} {
		b.Run("batch="+strconv.Itoa(batch), func(b *testing.B) {
			cfg := loopback(srv.URL)
			cfg.BatchSize = batch
			cfg.SigningSecret = configs.NewSecret("bench-secret")
			s, err := New(b.Context(), cfg, sinks.Deps{})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			const workers = 16
			lat := make([]time.Duration, 0, n)
			b.ResetTimer()
			start := time.Now()
			for range b.N {
				lat = lat[:0]
				lat = deliverAll(b, s, evs, batch, workers, lat)
			}
			elapsed := time.Since(start)
			b.StopTimer()
			slices.Sort(lat)
			b.ReportMetric(float64(n*b.N)/elapsed.Seconds(), "events/s")
			b.ReportMetric(float64(lat[len(lat)*99/100])/float64(time.Millisecond), "p99-ms")
		})
	}
}

// deliverAll delivers evs from workers goroutines in groups of batch events and
// appends each event's latency to lat.
func deliverAll(b *testing.B, s *Sink, evs []*decoder.Event, batch, workers int, lat []time.Duration) []time.Duration {
	groups := make(chan []*decoder.Event, workers)
	var mu sync.Mutex
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs := make([]error, batch)
			mine := make([]time.Duration, 0, len(evs)/workers+batch)
			for g := range groups {
				t0 := time.Now()
				if batch == 1 {
					errs[0] = s.Deliver(b.Context(), g[0])
				} else {
					s.DeliverBatch(b.Context(), g, errs[:len(g)])
				}
				d := time.Since(t0)
				for _, err := range errs[:len(g)] {
					if err != nil {
						b.Error(err) // keep draining so the feeder never blocks
					}
					mine = append(mine, d)
				}
			}
			mu.Lock()
			lat = append(lat, mine...)
			mu.Unlock()
		}()
	}
	for i := 0; i < len(evs); i += batch {
		groups <- evs[i:min(i+batch, len(evs))]
	}
	close(groups)
	wg.Wait()
	return lat
}
