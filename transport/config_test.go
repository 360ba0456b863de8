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
	bad(Config{Partitions: 4}, "partitions", "a key of the nats transport, which needs type: nats")
	for key, c := range map[string]Config{
		"url": {Connection: url}, "ca_file": {Connection: natssink.Connection{CAFile: "ca.pem"}},
		"creds_file": {Connection: natssink.Connection{CredsFile: "x.creds"}}, "dial_timeout": {Connection: natssink.Connection{DialTimeout: time.Second}},
		"user_env": {Connection: natssink.Connection{User: configs.NewSecret("u")}}, "password_env": {Connection: natssink.Connection{Password: configs.NewSecret("p")}},
		"token_env": {Connection: natssink.Connection{Token: configs.NewSecret("t")}}, "nkey_seed_env": {Connection: natssink.Connection{NKeySeed: configs.NewSecret("s")}},
		"stream": {Stream: "s"}, "subject_prefix": {SubjectPrefix: "p"}, "replicas": {Replicas: 3},
		"duplicate_window": {DuplicateWindow: time.Hour}, "max_pending": {MaxPending: 10}, "timeout": {Timeout: time.Second},
		"lease_ttl": {LeaseTTL: time.Minute}, "ack_wait": {AckWait: time.Minute},
	} {
		c.Type = TypeInProcess
		bad(c, key, "a key of the nats transport, which needs type: nats")
	}
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

	wq := func(subject string) jetstream.StreamConfig {
		return jetstream.StreamConfig{Subjects: []string{subject + ".*"}, Retention: jetstream.WorkQueuePolicy, Duplicates: time.Hour}
	}
	aged := wq("aged")
	aged.MaxAge = time.Hour
	f("aged", aged, cfg, "stream", "removes messages older than 1h0m0s (max_age)")
	old := wq("discardold")
	old.MaxMsgs = 1000
	f("discardold", old, cfg, "stream", "discards old messages when it reaches its limits")
	persubject := wq("persubject")
	persubject.MaxMsgsPerSubject, persubject.Discard = 10, jetstream.DiscardNew
	f("persubject", persubject, cfg, "stream", "keeps at most 10 messages per subject")

	// A bucket with another TTL than lease_ttl: validate-config says so as start does.
	kvCfg := cfg
	kvCfg.Stream, kvCfg.SubjectPrefix, kvCfg.LeaseTTL = "ttl", "ttl", 4*time.Second
	c3, _ := connect(t, kvCfg) // creates the stream and its bucket with a 4s TTL
	kvCfg.LeaseTTL = 7 * time.Second
	c4, err := Connect(kvCfg, c.log)
	if err != nil {
		t.Fatal(err)
	}
	defer c4.Close()
	_, err = c4.CheckStream(ctx)
	sinktest.WantKeyError(t, err, "lease_ttl", `has a TTL of 4s, not 7s`)
	_, err = c4.EnsureStream(ctx)
	sinktest.WantKeyError(t, err, "lease_ttl", `has a TTL of 4s, not 7s`)
	if _, err := c3.CheckStream(ctx); err != nil {
		t.Fatalf("unexpected error for the bucket the transport created: %v", err)
	}

	// The stream created by connect is accepted again.
	if _, err := c.EnsureStream(ctx); err != nil {
		t.Fatalf("unexpected error for the stream the transport created: %v", err)
	}
}
