package transport

import (
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/fraiseql/fraiseql-observers/configs"
	"github.com/fraiseql/fraiseql-observers/internal/sinktest"
	natssink "github.com/fraiseql/fraiseql-observers/sinks/nats"
)

func TestConfigValidate(t *testing.T) {
	ok := func(c Config) {
		t.Helper()
		if err := c.Validate(); err != nil {
			t.Fatalf("unexpected error for %+v: %v", c, err)
		}
	}
	bad := func(c Config, key, msg string) {
		t.Helper()
		sinktest.WantKeyError(t, c.Validate(), key, msg)
	}
	url := natssink.Connection{URL: configs.NewSecret("nats://127.0.0.1:4222")}
	ok(Config{})
	ok(Config{Type: TypeInProcess})
	ok(Config{Type: TypeNATS, Connection: url})
	ok(Config{Type: TypeNATS, Connection: url, Partitions: 64, Replicas: 3, LeaseTTL: 30 * time.Second})
	bad(Config{Type: "kafka"}, "type", `must be in_process or nats, not "kafka"`)
	bad(Config{Partitions: 4}, "type", "need type: nats")
	bad(Config{Type: TypeNATS}, "url", "url or url_env is required")
	bad(Config{Type: TypeNATS, Connection: natssink.Connection{URL: configs.NewSecret("http://x:1")}}, "url", "scheme must be nats or tls")
	bad(Config{Type: TypeNATS, Connection: url, Stream: "a.b"}, "stream", "a stream name has no")
	bad(Config{Type: TypeNATS, Connection: url, SubjectPrefix: "a.*"}, "subject_prefix", "wildcard")
	bad(Config{Type: TypeNATS, Connection: url, Partitions: 5000}, "partitions", "between 1 and 1024")
	bad(Config{Type: TypeNATS, Connection: url, Replicas: 7}, "replicas", "between 1 and 5")
	bad(Config{Type: TypeNATS, Connection: url, LeaseTTL: 10 * time.Millisecond}, "lease_ttl", "at least 1s")
	bad(Config{Type: TypeNATS, Connection: url, AckWait: -time.Second}, "ack_wait", "at least 1s")
}

// An existing stream that does not fit the transport is refused, naming the key
// to look at; a fitting one is accepted as it is.
func TestEnsureStreamChecksAnExistingStream(t *testing.T) {
	_, url := startNATS(t)
	cfg := testConfig(url)
	c, _ := connect(t, cfg) // creates it
	js := c.JetStream()
	ctx := sinktest.Context(t)
	f := func(name string, sc jetstream.StreamConfig, cfg Config, key, msg string) {
		t.Helper()
		sc.Name = name
		if _, err := js.CreateStream(ctx, sc); err != nil {
			t.Fatal(err)
		}
		cfg.Stream = name
		cfg.SubjectPrefix = name
		c2, err := Connect(cfg, c.log)
		if err != nil {
			t.Fatal(err)
		}
		defer c2.Close()
		_, err = c2.EnsureStream(ctx)
		sinktest.WantKeyError(t, err, key, msg)
	}
	f("wrongsubjects", jetstream.StreamConfig{Subjects: []string{"other.>"}, Retention: jetstream.WorkQueuePolicy, Duplicates: time.Hour}, cfg, "stream", "has subjects [other.>]")
	f("limits", jetstream.StreamConfig{Subjects: []string{"limits.*"}, Duplicates: time.Hour}, cfg, "stream", "has Limits retention; the transport needs WorkQueue")
	f("shortdups", jetstream.StreamConfig{Subjects: []string{"shortdups.*"}, Retention: jetstream.WorkQueuePolicy, Duplicates: time.Minute}, cfg, "duplicate_window", "shorter than 5m0s")
	f("eight", jetstream.StreamConfig{Subjects: []string{"eight.*"}, Retention: jetstream.WorkQueuePolicy, Duplicates: time.Hour,
		Description: "fraiseql-observers events; partitions=8"}, cfg, "partitions", "created with 8 partitions, not 4")

	// The stream created by connect is accepted again.
	if _, err := c.EnsureStream(ctx); err != nil {
		t.Fatalf("unexpected error for the stream the transport created: %v", err)
	}
}
