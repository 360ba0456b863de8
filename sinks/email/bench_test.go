package email

import (
	"testing"
	"time"

	"github.com/fraiseql/fraiseql-observers/internal/sinktest"
	"github.com/fraiseql/fraiseql-observers/internal/smtptest"
	"github.com/fraiseql/fraiseql-observers/sinks"
)

// BenchmarkDeliver sends SINK_BENCH_EVENTS messages (default 2000, at most 20000: one
// SMTP conversation with STARTTLS each, about a thousand a second) per iteration
// through a real pipeline with 4 workers to the in-process go-smtp server, and reports
// events/s.
func BenchmarkDeliver(b *testing.B) {
	n := min(sinktest.BenchEvents(b, 2000), 20000)
	srv := smtptest.Start(b, smtptest.Options{})
	s, err := New(b.Context(), config(srv), sinks.Deps{})
	if err != nil {
		b.Fatal(err)
	}
	evs := sinktest.Events(n, 100)
	b.ResetTimer()
	var elapsed time.Duration
	for range b.N {
		fresh := sinktest.Copies(evs)
		start := time.Now()
		dlq := sinktest.Run(b, s, fresh, sinktest.RunOptions{Timeout: 10 * time.Minute})
		elapsed += time.Since(start)
		if len(dlq.Snapshot()) != 0 {
			b.Fatalf("dead letters: %v", dlq.Snapshot()[0].Err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(n*b.N)/elapsed.Seconds(), "events/s")
}
