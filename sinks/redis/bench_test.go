package redis

import (
	"strconv"
	"testing"
	"time"

	"github.com/fraiseql/fraiseql-observers/configs"
	"github.com/fraiseql/fraiseql-observers/internal/sinktest"
	"github.com/fraiseql/fraiseql-observers/sinks"
)

// BenchmarkDeliver appends SINK_BENCH_EVENTS events (20000 by default) to a stream on
// a local redis-server (no persistence), in pipelined batches of 100 from 4 workers.
func BenchmarkDeliver(b *testing.B) {
	port := sinktest.FreePort(b)
	addr := "127.0.0.1:" + strconv.Itoa(port)
	sinktest.StartProcess(b, addr, "redis-server", "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "",
		"--appendonly", "no", "--dir", b.TempDir())
	s, err := NewStream(b.Context(), StreamConfig{ConnConfig: ConnConfig{URL: configs.NewSecret("redis://" + addr)}, Stream: "cdc:{{ event.table }}",
		MaxLen: 100000}, sinks.Deps{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	sinktest.BenchDeliver(b, s, sinktest.BenchEvents(b, 20000), 1000, sinktest.RunOptions{Concurrency: 4, BatchSize: 100, Timeout: 10 * time.Minute})
}
