package rabbitmq

import (
	"testing"
	"time"

	"github.com/fraiseql/fraiseql-observers/internal/sinktest"
)

// BenchmarkDeliver publishes SINK_BENCH_EVENTS events (default 20000, over 1000 rows)
// through a real pipeline to a private rabbitmq-server node: persistent messages to a
// durable topic exchange bound to one durable classic queue, publisher confirms,
// batches of up to 256 events, 8 workers. The node shares the machine's two cores.
func BenchmarkDeliver(b *testing.B) {
	n := startNode(b, nodeOptions{})
	bindQueue(b, n, "orders.*")
	s := newSink(b, cdcConfig(n))
	events := sinktest.BenchEvents(b, 20000)
	sinktest.BenchDeliver(b, s, events, 1000, sinktest.RunOptions{Concurrency: 8, BatchSize: 256, Timeout: 10 * time.Minute})
}
