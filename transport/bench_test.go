package transport

import (
	"testing"
	"time"

	"github.com/fraiseql/fraiseql-observers/internal/sinktest"
)

// BenchmarkPublish measures the reader side: events pushed until JetStream
// acknowledged all of them (single local nats-server, file storage, R1).
func BenchmarkPublish(b *testing.B) {
	_, url := startNATS(b)
	c, _ := connect(b, testConfig(url))
	evs := sinktest.Events(b.N, 1000)
	r, _ := startPublisherTB(b, c)
	b.ResetTimer()
	r.push(b, evs)
	r.waitAcked(b, evs, 10*time.Minute)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkExecute measures one executor process-local draining a stream that
// already holds the events, through the pipeline to a sink that only records.
func BenchmarkExecute(b *testing.B) {
	_, url := startNATS(b)
	cfg := testConfig(url)
	cfg.Partitions = 16
	c, _ := connect(b, cfg)
	evs := sinktest.Events(b.N, 1000)
	r, _ := startPublisherTB(b, c)
	r.push(b, evs)
	r.waitAcked(b, evs, 10*time.Minute)
	o := &oracle{}
	b.ResetTimer()
	runExecutor(b, cfg, "e1", o)
	waitDrained(b, c, o, len(evs), 10*time.Minute)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}
