package kafka

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"go.uber.org/goleak"

	"github.com/fraiseql/fraiseql-observers/configs"
	"github.com/fraiseql/fraiseql-observers/decoder"
	"github.com/fraiseql/fraiseql-observers/eval"
	"github.com/fraiseql/fraiseql-observers/internal/sinktest"
	"github.com/fraiseql/fraiseql-observers/lsn"
	"github.com/fraiseql/fraiseql-observers/pipeline"
	"github.com/fraiseql/fraiseql-observers/sinks"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const topic = "cdc.public.orders"

// newCluster starts a kfake cluster of three brokers on loopback with topic seeded
// with six partitions; it is closed when the test ends.
func newCluster(t testing.TB, opts ...kfake.Opt) *kfake.Cluster {
	t.Helper()
	c, err := kfake.NewCluster(append([]kfake.Opt{kfake.NumBrokers(3), kfake.SeedTopics(6, topic)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func newSink(t testing.TB, cfg Config) *Sink {
	t.Helper()
	if cfg.Topic == "" {
		cfg.Topic = "cdc.{{ event.schema }}.{{ event.table }}"
	}
	s, err := New(sinktest.Context(t), cfg, sinks.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// consumeAll reads every record of topic up to the end offsets the brokers report now.
func consumeAll(t testing.TB, brokers []string, topic string) []*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ends, err := kadm.NewClient(cl).ListEndOffsets(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	want := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Offset > 0 {
			want[o.Partition] = o.Offset
		}
	})
	var out []*kgo.Record
	for len(want) > 0 {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("consume %s: %v; %d partitions not read to the end", topic, ctx.Err(), len(want))
		}
		fs.EachError(func(_ string, p int32, err error) { t.Logf("fetch partition %d: %v", p, err) })
		fs.EachRecord(func(r *kgo.Record) {
			out = append(out, r)
			if end, ok := want[r.Partition]; ok && r.Offset+1 >= end {
				delete(want, r.Partition)
			}
		})
	}
	return out
}

func header(r *kgo.Record, key string) string {
	for _, h := range r.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

// checkRecords checks what a consumer read against the events produced: every event
// at least once (exactly once when exact), its id in the event-id header and in the
// value, key = table + pk, one partition per key, and first occurrences per key in
// commit order.
func checkRecords(t *testing.T, recs []*kgo.Record, evs []*decoder.Event, exact bool) {
	t.Helper()
	byID := map[string]*decoder.Event{}
	for _, ev := range evs {
		byID[ev.ID.String()] = ev
	}
	seen := map[string]int{}
	partOf := map[string]int32{}
	lastOf := map[string]lsn.Position{}
	for _, r := range recs { // in offset order within each partition
		id := header(r, HeaderEventID)
		ev := byID[id]
		if ev == nil {
			t.Fatalf("unexpected record with event-id %q", id)
		}
		if !bytes.Equal(r.Value, ev.JSON()) {
			t.Fatalf("unexpected value for %s; got %s; want %s", id, r.Value, ev.JSON())
		}
		var v struct{ ID string }
		if err := json.Unmarshal(r.Value, &v); err != nil || v.ID != id {
			t.Fatalf("unexpected id in value; got %q (%v); want %q", v.ID, err, id)
		}
		if want := string(AppendKey(nil, ev)); string(r.Key) != want {
			t.Fatalf("unexpected key for %s; got %q; want %q", id, r.Key, want)
		}
		if got := header(r, HeaderTable); got != "public.orders" {
			t.Fatalf("unexpected table header; got %q", got)
		}
		if got := header(r, HeaderOp); got != "INSERT" {
			t.Fatalf("unexpected op header; got %q", got)
		}
		k := string(r.Key)
		if p, ok := partOf[k]; ok && p != r.Partition {
			t.Fatalf("key %q in partitions %d and %d", k, p, r.Partition)
		}
		partOf[k] = r.Partition
		if seen[id] == 0 {
			if last, ok := lastOf[k]; ok && ev.ID.Compare(last) < 0 {
				t.Fatalf("key %q: event %s first seen after %s", k, id, last)
			}
			lastOf[k] = ev.ID
		}
		seen[id]++
	}
	dups := 0
	for _, ev := range evs {
		n := seen[ev.ID.String()]
		if n == 0 {
			t.Fatalf("event %s lost", ev.ID)
		}
		dups += n - 1
	}
	if exact && dups > 0 {
		t.Fatalf("unexpected duplicates; got %d; want 0", dups)
	}
	t.Logf("%d events, %d records, %d duplicates, %d keys", len(evs), len(recs), dups, len(partOf))
}

func TestDeliverOrderedPerKey(t *testing.T) {
	c := newCluster(t)
	s := newSink(t, Config{Brokers: c.ListenAddrs()})
	evs := sinktest.Events(1000, 37)
	dlq := sinktest.Run(t, s, evs, sinktest.RunOptions{Concurrency: 4, BatchSize: 32})
	if n := len(dlq.Snapshot()); n != 0 {
		t.Fatalf("unexpected dead letters; got %d; want 0: %v", n, dlq.Snapshot()[0].Err)
	}
	checkRecords(t, consumeAll(t, c.ListenAddrs(), topic), evs, true)
}

func TestDeliverSingle(t *testing.T) {
	c := newCluster(t)
	s := newSink(t, Config{Brokers: c.ListenAddrs(), Topic: topic, Compression: "zstd"})
	evs := sinktest.Events(3, 3)
	for _, ev := range evs {
		if err := s.Deliver(context.Background(), ev); err != nil {
			t.Fatal(err)
		}
	}
	checkRecords(t, consumeAll(t, c.ListenAddrs(), topic), evs, true)
}

// bigEvent returns events with event k (of n) carrying a status of size bytes.
func bigEvents(n, k, size int) []*decoder.Event {
	evs := sinktest.Events(n, n)
	big := evs[k].New
	vals := append([]json.RawMessage(nil), big.Values...)
	vals[1] = json.RawMessage(`"` + strings.Repeat("x", size) + `"`)
	evs[k].New = &decoder.Row{Names: big.Names, Values: vals}
	return evs
}

func TestTooLargeGoesToDLQAtOnce(t *testing.T) {
	f := func(name string, cfg Config, topicLimit string) {
		t.Run(name, func(t *testing.T) {
			c := newCluster(t)
			cfg.Brokers = c.ListenAddrs()
			if topicLimit != "" {
				setTopicConfig(t, c, "max.message.bytes", topicLimit)
			}
			s := newSink(t, cfg)
			evs := bigEvents(40, 7, 50_000)
			dlq := sinktest.Run(t, s, evs, sinktest.RunOptions{BatchSize: 8,
				Retry: pipeline.RetryPolicy{MaxAttempts: 5, Strategy: pipeline.BackoffFixed, Initial: 50 * time.Millisecond}})
			letters := dlq.Snapshot()
			for _, dl := range letters {
				t.Logf("letter %s attempts %d: %v", dl.Event.ID, dl.Attempts, dl.Err)
			}
			if len(letters) != 1 {
				t.Fatalf("unexpected dead letters; got %d; want 1", len(letters))
			}
			dl := letters[0]
			if dl.Event != evs[7] || dl.Attempts != 1 || sinks.Class(dl.Err) != classTooLarge {
				t.Fatalf("unexpected dead letter; got %s after %d attempts, class %s (%v); want %s after 1, too_large",
					dl.Event.ID, dl.Attempts, sinks.Class(dl.Err), dl.Err, evs[7].ID)
			}
			t.Logf("dead letter: %v", dl.Err)
			rest := append(append([]*decoder.Event(nil), evs[:7]...), evs[8:]...)
			checkRecords(t, consumeAll(t, c.ListenAddrs(), topic), rest, false)
		})
	}
	// The record is over max_message_bytes: refused before anything is sent.
	f("client", Config{MaxMessageBytes: 20_000}, "")
	// The topic's max.message.bytes is lower than max_message_bytes: the broker
	// refuses the batch; the topic's limit tells that the record alone is too large,
	// and the other records of a refused batch are retried.
	f("broker", Config{}, "20000")
}

func setTopicConfig(t testing.TB, c *kfake.Cluster, key, value string) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rs, err := kadm.NewClient(cl).AlterTopicConfigs(ctx, []kadm.AlterConfig{{Op: kadm.SetConfig, Name: key, Value: &value}}, topic)
	if err == nil {
		_, err = rs.On(topic, nil)
	}
	if err != nil {
		t.Fatalf("alter topic config: %v", err)
	}
}

// TestBrokersGoAwayAndComeBack closes the whole cluster mid-stream and starts it again
// on the same ports from its data directory: every event arrives at least once with
// its stable id, in order per key, and nothing goes to the DLQ.
func TestBrokersGoAwayAndComeBack(t *testing.T) {
	dir := t.TempDir()
	c1 := newCluster(t, kfake.DataDir(dir), kfake.SyncWrites())
	addrs := c1.ListenAddrs()
	var ports []int
	for _, a := range addrs {
		var p int
		fmt.Sscanf(a[strings.LastIndexByte(a, ':')+1:], "%d", &p)
		ports = append(ports, p)
	}
	s := newSink(t, Config{Brokers: addrs, Timeout: 2 * time.Second})
	g := sinktest.NewGate(s, 300)
	evs := sinktest.Events(2000, 50)
	var c2 *kfake.Cluster
	restarted := make(chan struct{})
	dlq := sinktest.Run(t, g, evs, sinktest.RunOptions{Concurrency: 4, BatchSize: 16, Timeout: 3 * time.Minute,
		Retry: pipeline.RetryPolicy{MaxAttempts: 1000, Strategy: pipeline.BackoffFixed, Initial: 100 * time.Millisecond},
		During: func() {
			defer close(restarted)
			<-g.Reached
			c1.Close()
			close(g.Release)
			<-g.FirstFailure // deliveries fail while the brokers are away
			var err error
			c2, err = kfake.NewCluster(kfake.Ports(ports...), kfake.DataDir(dir), kfake.SyncWrites(), kfake.SeedTopics(6, topic))
			if err != nil {
				t.Errorf("restart cluster: %v", err)
			}
		}})
	<-restarted
	if c2 == nil {
		t.FailNow()
	}
	t.Cleanup(c2.Close)
	if n := len(dlq.Snapshot()); n != 0 {
		t.Fatalf("unexpected dead letters; got %d; want 0: %v", n, dlq.Snapshot()[0].Err)
	}
	if g.Failures() == 0 {
		t.Fatal("no delivery failed: the outage did not happen mid-stream")
	}
	t.Logf("failed deliveries during the outage: %d", g.Failures())
	checkRecords(t, consumeAll(t, c2.ListenAddrs(), topic), evs, false)
}

// TestRetriableBrokerErrors makes the brokers answer produce requests with retriable
// errors for a while: events are delivered once the errors stop, none is lost.
func TestRetriableBrokerErrors(t *testing.T) {
	c := newCluster(t)
	s := newSink(t, Config{Brokers: c.ListenAddrs(), Timeout: time.Second})
	g := sinktest.NewGate(s, 100)
	evs := sinktest.Events(600, 20)
	dlq := sinktest.Run(t, g, evs, sinktest.RunOptions{Concurrency: 4, BatchSize: 16,
		Retry: pipeline.RetryPolicy{MaxAttempts: 1000, Strategy: pipeline.BackoffFixed, Initial: 50 * time.Millisecond},
		During: func() {
			<-g.Reached
			h := c.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Err: kerr.NotLeaderForPartition, Count: -1})
			close(g.Release)
			<-g.FirstFailure
			h.Remove()
		}})
	if n := len(dlq.Snapshot()); n != 0 {
		t.Fatalf("unexpected dead letters; got %d; want 0", n)
	}
	if g.Failures() == 0 {
		t.Fatal("no delivery failed while the fault was installed")
	}
	checkRecords(t, consumeAll(t, c.ListenAddrs(), topic), evs, false)
}

func TestClassification(t *testing.T) {
	c := newCluster(t, kfake.SeedTopics(1, "other"))
	ev := sinktest.Events(1, 1)[0]
	bad := sinktest.Events(1, 1)[0]
	bad.New = &decoder.Row{Names: []string{"id", "status"}, Values: []json.RawMessage{json.RawMessage("0"), json.RawMessage(`"a b"`)}}
	f := func(name string, cfg Config, ev *decoder.Event, wantClass string, wantRetry bool) {
		t.Run(name, func(t *testing.T) {
			cfg.Brokers = c.ListenAddrs()
			s := newSink(t, cfg)
			err := s.Deliver(context.Background(), ev)
			var se *sinks.Error
			if !errors.As(err, &se) {
				t.Fatalf("unexpected error; got %v; want a sinks.Error", err)
			}
			if se.Class != wantClass || se.Retry != wantRetry {
				t.Fatalf("unexpected classification; got %s retry=%v (%v); want %s retry=%v", se.Class, se.Retry, err, wantClass, wantRetry)
			}
			t.Logf("%s: %v", se.Class, err)
		})
	}
	f("unknown topic", Config{Topic: "missing", Timeout: 2 * time.Second}, ev, classUnknownTopic, true)
	f("invalid rendered topic", Config{Topic: "cdc.{{ new.status }}"}, bad, "invalid_topic", false)
	f("template error", Config{Topic: "cdc.{{ new.nope }}"}, ev, "template", false)
}

func TestAppendKey(t *testing.T) {
	f := func(ev *decoder.Event, want string) {
		t.Helper()
		if got := string(AppendKey(nil, ev)); got != want {
			t.Fatalf("unexpected key; got %q; want %q", got, want)
		}
	}
	row := func(vals ...string) *decoder.Row {
		r := &decoder.Row{}
		for i, v := range vals {
			r.Names = append(r.Names, fmt.Sprint("c", i))
			r.Values = append(r.Values, json.RawMessage(v))
		}
		return r
	}
	f(&decoder.Event{Schema: "public", Table: "orders", Op: decoder.OpInsert, Key: row("42")}, "public.orders:42")
	f(&decoder.Event{Schema: "s", Table: "items", Op: decoder.OpUpdate, Key: row("42", `"a,b"`)}, `s.items:42,"a,b"`)
	f(&decoder.Event{Schema: "public", Table: "log", Op: decoder.OpInsert}, "public.log:")
	f(&decoder.Event{Op: decoder.OpMessage, Message: &decoder.Message{Prefix: "audit"}}, "message:audit")
}

func TestConfigValidate(t *testing.T) {
	f := func(cfg Config, want string) {
		t.Helper()
		sinktest.WantError(t, cfg.Validate(), want)
	}
	ok := Config{Brokers: []string{"127.0.0.1:9092"}, Topic: "t"}
	f(ok, "")
	f(Config{Topic: "t"}, "brokers: at least one")
	f(Config{Brokers: []string{"nohost"}, Topic: "t"}, "not host:port")
	f(Config{Brokers: ok.Brokers}, "topic: required")
	f(Config{Brokers: ok.Brokers, Topic: "a b"}, "topic: topic name has a character")
	f(Config{Brokers: ok.Brokers, Topic: "{{ nope("}, "topic:")
	f(Config{Brokers: ok.Brokers, Topic: "t", Acks: "none"}, "acks: must be all or leader")
	f(Config{Brokers: ok.Brokers, Topic: "t", Compression: "brotli"}, "compression: must be")
	f(Config{Brokers: ok.Brokers, Topic: "t", MaxMessageBytes: 10}, "max_message_bytes")
	f(Config{Brokers: ok.Brokers, Topic: "t", SASLMechanism: "PLAIN"}, "needs a username")
	f(Config{Brokers: ok.Brokers, Topic: "t", Username: configs.NewSecret("u"), Password: configs.NewSecret("p")}, "sasl_mechanism: required")
	f(Config{Brokers: ok.Brokers, Topic: "t", SASLMechanism: "GSSAPI", Username: configs.NewSecret("u"), Password: configs.NewSecret("p")}, "must be PLAIN")
	cfg := ok
	cfg.Defaults()
	if err := cfg.Validate(); err != nil || cfg.Timeout != DefaultTimeout || cfg.Acks != AcksAll ||
		cfg.Compression != "none" || cfg.MaxMessageBytes != DefaultMaxMessageBytes {
		t.Fatalf("unexpected defaults: %+v (%v)", cfg, err)
	}
}

func TestSASL(t *testing.T) {
	c := newCluster(t, kfake.EnableSASL(),
		kfake.Superuser(SASLPlain, "plain-user", "plain-pass"),
		kfake.Superuser(SASLScramSHA256, "scram256-user", "scram256-pass"),
		kfake.Superuser(SASLScramSHA512, "scram512-user", "scram512-pass"))
	ev := sinktest.Events(1, 1)[0]
	f := func(mech, user, pass string, wantClass string) {
		t.Run(mech+"/"+user+"/"+pass, func(t *testing.T) {
			s := newSink(t, Config{Brokers: c.ListenAddrs(), Topic: topic, Timeout: time.Second,
				SASLMechanism: mech, Username: configs.NewSecret(user), Password: configs.NewSecret(pass)})
			err := s.Deliver(context.Background(), ev)
			if wantClass == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if got := sinks.Class(err); got != wantClass {
				t.Fatalf("unexpected class; got %s (%v); want %s", got, err, wantClass)
			}
			if strings.Contains(err.Error(), pass) {
				t.Fatalf("error shows the password: %v", err)
			}
			t.Logf("%v", err)
		})
	}
	f(SASLPlain, "plain-user", "plain-pass", "")
	f(SASLScramSHA256, "scram256-user", "scram256-pass", "")
	f(SASLScramSHA512, "scram512-user", "scram512-pass", "")
	// kfake closes the connection on a failed authentication (a real broker answers
	// SASL_AUTHENTICATION_FAILED first, classified auth: see TestClassify), so here
	// the record times out: not delivered, retried later.
	f(SASLScramSHA256, "scram256-user", "wrong-pass", classTimeout)
	f(SASLPlain, "nobody", "wrong-pass", classTimeout)
}

func TestClassify(t *testing.T) {
	s := newSink(t, Config{Brokers: []string{"127.0.0.1:1"}, Topic: topic})
	small := &kgo.Record{Topic: topic, Value: []byte("{}")}
	huge := &kgo.Record{Topic: topic, Value: make([]byte, DefaultMaxMessageBytes)}
	f := func(r *kgo.Record, err error, wantClass string, wantRetry bool) {
		t.Helper()
		got := s.classify(context.Background(), nil, r, err)
		var se *sinks.Error
		if !errors.As(got, &se) || se.Class != wantClass || se.Retry != wantRetry {
			t.Fatalf("unexpected classification of %v; got %v (%T %+v); want %s retry=%v", err, got, got, se, wantClass, wantRetry)
		}
		if !errors.Is(got, err) {
			t.Fatalf("classification of %v does not wrap it: %v", err, got)
		}
	}
	f(small, kerr.NotLeaderForPartition, "kafka_not_leader_for_partition", true)
	f(small, kerr.RequestTimedOut, "kafka_request_timed_out", true)
	f(small, kerr.NotEnoughReplicas, "kafka_not_enough_replicas", true)
	f(small, fmt.Errorf("wrapped: %w", kerr.LeaderNotAvailable), "kafka_leader_not_available", true)
	f(small, kerr.UnknownTopicOrPartition, classUnknownTopic, true)
	f(small, kerr.InvalidTopicException, "invalid_topic", false)
	f(small, kerr.TopicAuthorizationFailed, classAuth, false)
	f(small, kerr.ClusterAuthorizationFailed, classAuth, false)
	f(small, kerr.SaslAuthenticationFailed, classAuth, false)
	f(small, kerr.InvalidRecord, classInvalidRecord, false)
	f(huge, fmt.Errorf("%w (uncompressed_bytes=1000100)", kerr.MessageTooLarge), classTooLarge, false)
	f(small, kgo.ErrRecordTimeout, classTimeout, true)
	f(small, kgo.ErrRecordRetries, classTimeout, true)
	f(small, context.DeadlineExceeded, classTimeout, true)
	f(small, context.Canceled, classTimeout, true) // another delivery's context failed the batch
	f(small, kgo.ErrClientClosed, classClosed, true)
	f(small, &net.OpError{Op: "dial", Err: errors.New("connection refused")}, classNetwork, true)
	f(small, errors.New("something else"), "kafka", true)

	// The delivery's own context is done: the pipeline is stopping.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if got := s.classify(ctx, nil, small, context.Canceled); !errors.Is(got, context.Canceled) || sinks.Class(got) != "error" {
		t.Fatalf("unexpected error on shutdown; got %v (class %s)", got, sinks.Class(got))
	}
}

func TestTLS(t *testing.T) {
	certs := sinktest.NewCerts(t)
	c := newCluster(t, kfake.TLS(certs.Server))
	ev := sinktest.Events(1, 1)[0]
	f := func(name string, tf *sinks.TLSFiles, ok bool) {
		t.Run(name, func(t *testing.T) {
			s := newSink(t, Config{Brokers: c.ListenAddrs(), Topic: topic, Timeout: time.Second, TLS: tf})
			err := s.Deliver(context.Background(), ev)
			if ok != (err == nil) {
				t.Fatalf("unexpected result; got %v; want success=%v", err, ok)
			}
			if err != nil {
				if !pipeline.Retryable(err) {
					t.Fatalf("unexpected permanent error: %v", err)
				}
				t.Logf("%s: %v", sinks.Class(err), err)
			}
		})
	}
	f("verified with ca_file", &sinks.TLSFiles{CAFile: certs.CAFile}, true)
	f("unknown authority", &sinks.TLSFiles{}, false)
	f("wrong server name", &sinks.TLSFiles{CAFile: certs.CAFile, ServerName: "other.example"}, false)
	f("plaintext to a TLS listener", nil, false)
}

// TestTopicSeesEntity: a topic template sees the observer's entity as `entity`, as
// every action's templates do (here an alias; the event's table is public.orders).
func TestTopicSeesEntity(t *testing.T) {
	s, err := New(t.Context(), Config{Brokers: []string{"127.0.0.1:1"}, Topic: "cdc.{{ entity }}.{{ event.op }}"},
		sinks.Deps{Templates: sinks.Templates{Meta: eval.Meta{Entity: "Order"}}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	r, err := s.record(sinktest.Events(1, 1)[0])
	if err != nil || r.Topic != "cdc.Order.INSERT" {
		t.Fatalf("unexpected topic; got %q, %v; want cdc.Order.INSERT", r.Topic, err)
	}
}
