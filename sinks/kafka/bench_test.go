package kafka

import (
	"testing"
	"time"

	"github.com/fraiseql/fraiseql-observers/internal/sinktest"
)

// BenchmarkDeliver produces SINK_BENCH_EVENTS events (default 20000, over 1000 rows)
// through a real pipeline to a three-broker kfake cluster in this process, acks=all,
// batches of up to 256 events, 8 workers. kfake shares the CPU with the producer: the
// figure is a floor for the sink, not a Kafka throughput.
func BenchmarkDeliver(b *testing.B) {
	c := newCluster(b)
	s := newSink(b, Config{Brokers: c.ListenAddrs()})
	n := sinktest.BenchEvents(b, 20000)
	sinktest.BenchDeliver(b, s, n, 1000, sinktest.RunOptions{Concurrency: 8, BatchSize: 256, Timeout: 10 * time.Minute})
}
