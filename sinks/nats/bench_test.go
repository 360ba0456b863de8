package nats

import (
	"testing"
	"time"

	"github.com/fraiseql/fraiseql-observers/configs"
	"github.com/fraiseql/fraiseql-observers/internal/sinktest"
	"github.com/fraiseql/fraiseql-observers/sinks"
)

// BenchmarkDeliver publishes SINK_BENCH_EVENTS events (20000 by default) to a file
// stream (2-minute duplicate window) on a local nats-server, asynchronously in batches
// of 100 from 4 workers, each batch waiting for all its PubAcks.
func BenchmarkDeliver(b *testing.B) {
	srv := startNATS(b, "")
	createStream(b, jsClient(b, srv.url))
	s, err := New(sinktest.Context(b), Config{URL: configs.NewSecret(srv.url), Subject: subject, Stream: "CDC"}, sinks.Deps{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	sinktest.BenchDeliver(b, s, sinktest.BenchEvents(b, 20000), 1000, sinktest.RunOptions{Concurrency: 4, BatchSize: 100, Timeout: 10 * time.Minute})
}
