package rabbitmq

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"go.uber.org/goleak"

	"github.com/fraiseql/fraiseql-observers/configs"
	"github.com/fraiseql/fraiseql-observers/decoder"
	"github.com/fraiseql/fraiseql-observers/internal/sinktest"
	"github.com/fraiseql/fraiseql-observers/lsn"
	"github.com/fraiseql/fraiseql-observers/pipeline"
	"github.com/fraiseql/fraiseql-observers/sinks"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const (
	exchange = "cdc"
	queue    = "orders"
)

// cdcConfig publishes to a durable topic exchange "cdc" with routing key
// "<table>.<op>" ("orders.INSERT").
func cdcConfig(n *node) Config {
	return Config{URL: configs.NewSecret(n.URL), Exchange: exchange, RoutingKey: "{{ event.table }}.{{ event.op }}",
		Declare: &Declare{Kind: "topic", Durable: true}}
}

func newSink(t testing.TB, cfg Config) *Sink {
	t.Helper()
	s, err := New(sinktest.Context(t), cfg, sinks.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// admin opens a connection and channel for the test's own declarations and reads.
func admin(t testing.TB, n *node) *amqp.Channel {
	t.Helper()
	conn, err := amqp.DialConfig(n.URL, amqp.Config{Dial: amqp.DefaultDial(10 * time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	return ch
}

// bindQueue declares the durable topic exchange and a durable queue bound to it
// with pattern.
func bindQueue(t testing.TB, n *node, pattern string) {
	t.Helper()
	ch := admin(t, n)
	if err := ch.ExchangeDeclare(exchange, "topic", true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := ch.QueueDeclare(queue, true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if err := ch.QueueBind(queue, pattern, exchange, false, nil); err != nil {
		t.Fatal(err)
	}
}

// drain reads every message of the queue.
func drain(t testing.TB, n *node) []amqp.Delivery {
	t.Helper()
	ch := admin(t, n)
	var out []amqp.Delivery
	for {
		d, ok, err := ch.Get(queue, true)
		if err != nil {
			t.Fatalf("get: %v", err)
		}
		if !ok {
			return out
		}
		out = append(out, d)
	}
}

// checkMessages checks what a consumer read against the events published: every
// event at least once (exactly once when exact), message id = event id, persistent,
// JSON, headers, and first occurrences per row in commit order.
func checkMessages(t *testing.T, ds []amqp.Delivery, evs []*decoder.Event, exact bool) {
	t.Helper()
	byID := map[string]*decoder.Event{}
	for _, ev := range evs {
		byID[ev.ID.String()] = ev
	}
	seen := map[string]int{}
	last := map[string]lsn.Position{}
	for _, d := range ds {
		ev := byID[d.MessageId]
		if ev == nil {
			t.Fatalf("unexpected message id %q", d.MessageId)
		}
		if !bytes.Equal(d.Body, ev.JSON()) {
			t.Fatalf("unexpected body for %s; got %s; want %s", d.MessageId, d.Body, ev.JSON())
		}
		var v struct{ ID string }
		if err := json.Unmarshal(d.Body, &v); err != nil || v.ID != d.MessageId {
			t.Fatalf("unexpected id in body; got %q (%v); want %q", v.ID, err, d.MessageId)
		}
		if d.DeliveryMode != amqp.Persistent || d.ContentType != "application/json" {
			t.Fatalf("unexpected properties; got delivery mode %d, content type %q", d.DeliveryMode, d.ContentType)
		}
		if d.Headers[HeaderTable] != "public.orders" || d.Headers[HeaderOp] != "INSERT" {
			t.Fatalf("unexpected headers; got %v", d.Headers)
		}
		row := string(ev.Key.Values[0])
		if seen[d.MessageId] == 0 {
			if p, ok := last[row]; ok && ev.ID.Compare(p) < 0 {
				t.Fatalf("row %s: event %s first seen after %s", row, ev.ID, p)
			}
			last[row] = ev.ID
		}
		seen[d.MessageId]++
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
	t.Logf("%d events, %d messages, %d duplicates", len(evs), len(ds), dups)
}

func TestPublishConfirmed(t *testing.T) {
	n := startNode(t, nodeOptions{})
	bindQueue(t, n, "orders.*")
	s := newSink(t, cdcConfig(n))
	evs := sinktest.Events(1000, 37)
	dlq := sinktest.Run(t, s, evs, sinktest.RunOptions{Concurrency: 4, BatchSize: 32})
	if l := dlq.Snapshot(); len(l) != 0 {
		t.Fatalf("unexpected dead letters; got %d; want 0: %v", len(l), l[0].Err)
	}
	checkMessages(t, drain(t, n), evs, true)

	// One by one, to the default exchange: the routing key names the queue.
	s1 := newSink(t, Config{URL: configs.NewSecret(n.URL), RoutingKey: queue})
	for _, ev := range evs[:3] {
		if err := s1.Deliver(context.Background(), ev); err != nil {
			t.Fatal(err)
		}
	}
	checkMessages(t, drain(t, n), evs[:3], true)
}

func TestUnroutableGoesToDLQ(t *testing.T) {
	n := startNode(t, nodeOptions{})
	bindQueue(t, n, "orders.pending")
	evs := sinktest.Events(50, 50)
	lost := evs[7]
	lost.New = &decoder.Row{Names: lost.New.Names, Values: []json.RawMessage{lost.New.Values[0], json.RawMessage(`"lost"`), lost.New.Values[2]}}
	cfg := cdcConfig(n)
	cfg.RoutingKey = "orders.{{ new.status }}"
	s := newSink(t, cfg)
	dlq := sinktest.Run(t, s, evs, sinktest.RunOptions{BatchSize: 8})
	l := dlq.Snapshot()
	if len(l) != 1 || l[0].Event != lost || l[0].Attempts != 1 || sinks.Class(l[0].Err) != "unroutable" {
		for _, dl := range l {
			t.Logf("dead letter %s after %d attempts: %v", dl.Event.ID, dl.Attempts, dl.Err)
		}
		t.Fatalf("unexpected dead letters; got %d; want %s after 1 attempt, class unroutable", len(l), lost.ID)
	}
	t.Logf("dead letter: %v", l[0].Err)
	checkMessages(t, drain(t, n), append(append([]*decoder.Event(nil), evs[:7]...), evs[8:]...), true)

	// With mandatory off the broker drops it and the delivery succeeds.
	mandatory := false
	cfg.Mandatory = &mandatory
	if err := newSink(t, cfg).Deliver(context.Background(), lost); err != nil {
		t.Fatalf("unexpected error with mandatory off: %v", err)
	}
}

func TestTooLargeGoesToDLQAtOnce(t *testing.T) {
	n := startNode(t, nodeOptions{MaxMessageSize: 65536})
	bindQueue(t, n, "orders.*")
	f := func(name string, cfg Config) {
		t.Run(name, func(t *testing.T) {
			evs := sinktest.Events(40, 40)
			big := evs[7]
			big.New = &decoder.Row{Names: big.New.Names, Values: []json.RawMessage{big.New.Values[0],
				json.RawMessage(`"` + strings.Repeat("x", 100_000) + `"`), big.New.Values[2]}}
			dlq := sinktest.Run(t, newSink(t, cfg), evs, sinktest.RunOptions{BatchSize: 8})
			l := dlq.Snapshot()
			if len(l) != 1 || l[0].Event != big || l[0].Attempts != 1 || sinks.Class(l[0].Err) != "too_large" {
				for _, dl := range l {
					t.Logf("dead letter %s after %d attempts: %v", dl.Event.ID, dl.Attempts, dl.Err)
				}
				t.Fatalf("unexpected dead letters; got %d; want %s after 1 attempt, class too_large", len(l), big.ID)
			}
			t.Logf("dead letter: %v", l[0].Err)
			checkMessages(t, drain(t, n), append(append([]*decoder.Event(nil), evs[:7]...), evs[8:]...), false)
		})
	}
	// The broker closes the channel (PRECONDITION_FAILED, over max_message_size); the
	// other messages of the batch are published again one by one and delivered.
	f("broker", cdcConfig(n))
	// Refused before publishing.
	cfg := cdcConfig(n)
	cfg.MaxMessageBytes = 20_000
	f("client", cfg)
}

func TestExchangeNotFoundIsTransient(t *testing.T) {
	n := startNode(t, nodeOptions{})
	s := newSink(t, Config{URL: configs.NewSecret(n.URL), Exchange: "later", RoutingKey: "k", Timeout: 5 * time.Second})
	ev := sinktest.Events(1, 1)[0]
	err := s.Deliver(context.Background(), ev)
	if sinks.Class(err) != "not_found" || !pipeline.Retryable(err) {
		t.Fatalf("unexpected error; got %v (class %s); want a transient not_found", err, sinks.Class(err))
	}
	t.Logf("%v", err)
	// An operator creates the exchange: the next attempt goes through.
	ch := admin(t, n)
	if err := ch.ExchangeDeclare("later", "direct", true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := ch.QueueDeclare("later", true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if err := ch.QueueBind("later", "k", "later", false, nil); err != nil {
		t.Fatal(err)
	}
	if err := s.Deliver(context.Background(), ev); err != nil {
		t.Fatalf("unexpected error after the exchange was created: %v", err)
	}
}

// TestNackAndTLS shares one node: a queue that rejects publishes when full makes the
// broker nack (transient), and an amqps:// listener checks TLS with verification.
func TestNackAndTLS(t *testing.T) {
	certs := sinktest.NewCerts(t)
	tlsPort := sinktest.FreePort(t)
	n := startNode(t, nodeOptions{Extra: fmt.Sprintf(`listeners.ssl.default = 127.0.0.1:%d
ssl_options.cacertfile = %s
ssl_options.certfile = %s
ssl_options.keyfile = %s
ssl_options.verify = verify_none
ssl_options.fail_if_no_peer_cert = false
`, tlsPort, certs.CAFile, certs.CertFile, certs.KeyFile)})
	ev := sinktest.Events(2, 2)

	t.Run("nack", func(t *testing.T) {
		ch := admin(t, n)
		args := amqp.Table{"x-max-length": int32(1), "x-overflow": "reject-publish"}
		if _, err := ch.QueueDeclare("full", true, false, false, false, args); err != nil {
			t.Fatal(err)
		}
		s := newSink(t, Config{URL: configs.NewSecret(n.URL), RoutingKey: "full"})
		if err := s.Deliver(context.Background(), ev[0]); err != nil {
			t.Fatalf("unexpected error for the first message: %v", err)
		}
		err := s.Deliver(context.Background(), ev[1])
		if sinks.Class(err) != "nack" || !pipeline.Retryable(err) {
			t.Fatalf("unexpected error; got %v (class %s); want a transient nack", err, sinks.Class(err))
		}
		t.Logf("%v", err)
	})

	tlsURL := fmt.Sprintf("amqps://guest:guest@127.0.0.1:%d/", tlsPort)
	f := func(name string, tf *sinks.TLSFiles, ok bool) {
		t.Run("tls/"+name, func(t *testing.T) {
			s := newSink(t, Config{URL: configs.NewSecret(tlsURL), RoutingKey: "tls-q", Mandatory: new(bool), Timeout: 5 * time.Second, TLS: tf})
			err := s.Deliver(context.Background(), ev[0])
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
	f("unknown authority", nil, false)
	f("wrong server name", &sinks.TLSFiles{CAFile: certs.CAFile, ServerName: "other.example"}, false)
}

func TestConnectErrors(t *testing.T) {
	n := startNode(t, nodeOptions{})
	ev := sinktest.Events(1, 1)[0]

	// Wrong credentials: ACCESS_REFUSED, permanent, and the password is not shown.
	s := newSink(t, Config{URL: configs.NewSecret(strings.Replace(n.URL, "guest:guest", "guest:Wr0ngPa55", 1)), RoutingKey: "q"})
	err := s.Deliver(context.Background(), ev)
	if sinks.Class(err) != "access_refused" || pipeline.Retryable(err) {
		t.Fatalf("unexpected error; got %v (class %s); want a permanent access_refused", err, sinks.Class(err))
	}
	if strings.Contains(err.Error(), "Wr0ngPa55") {
		t.Fatalf("error shows the password: %v", err)
	}
	t.Logf("%v", err)

	// Nothing listens: a transient error, then a fast one while the reconnection
	// backs off; neither waits past the timeout.
	dead := Config{URL: configs.NewSecret("amqp://guest:guest@127.0.0.1:" + strconv.Itoa(sinktest.FreePort(t)) + "/"), RoutingKey: "q", Timeout: 2 * time.Second}
	s = newSink(t, dead)
	for i, want := range []string{"connection_closed", "disconnected"} {
		err := s.Deliver(context.Background(), ev)
		if sinks.Class(err) != want || !pipeline.Retryable(err) {
			t.Fatalf("attempt %d: unexpected error; got %v (class %s); want a transient %s", i, err, sinks.Class(err), want)
		}
		t.Logf("%v", err)
	}
}

// TestBrokerKilledAndRestarted kills the node with SIGKILL mid-stream and starts it
// again from its data directory: every event is in the durable queue at least once
// with its stable id, and nothing went to the DLQ.
func TestBrokerKilledAndRestarted(t *testing.T) {
	n := startNode(t, nodeOptions{})
	bindQueue(t, n, "orders.*")
	cfg := cdcConfig(n)
	cfg.Timeout = 3 * time.Second
	g := sinktest.NewGate(newSink(t, cfg), 300)
	evs := sinktest.Events(2000, 50)
	dlq := sinktest.Run(t, g, evs, sinktest.RunOptions{Concurrency: 4, BatchSize: 16, Timeout: 5 * time.Minute,
		Retry: pipeline.RetryPolicy{MaxAttempts: 1000, Strategy: pipeline.BackoffFixed, Initial: 200 * time.Millisecond},
		During: func() {
			<-g.Reached
			n.Kill()
			close(g.Release)
			<-g.FirstFailure // deliveries fail while the broker is down
			start := time.Now()
			n.Start()
			t.Logf("node restarted in %v", time.Since(start).Round(10*time.Millisecond))
		}})
	if l := dlq.Snapshot(); len(l) != 0 {
		t.Fatalf("unexpected dead letters; got %d; want 0: %v", len(l), l[0].Err)
	}
	if g.Failures() == 0 {
		t.Fatal("no delivery failed: the broker was not down mid-stream")
	}
	t.Logf("failed deliveries during the outage: %d", g.Failures())
	checkMessages(t, drain(t, n), evs, false)
}

// TestUnroutableAfterReconnectIsRetried: a node restarted after a crash accepts
// connections before it has recovered its durable bindings and returns messages
// meanwhile. A return on a connection that replaced a lost one is transient (the
// event is retried, not dead-lettered); on a connection that never broke it stays
// permanent. The window is made deterministic with a routing key that no queue
// binds until the test binds one (unbinding the recovered binding instead could
// race with the node's own recovery of it).
func TestUnroutableAfterReconnectIsRetried(t *testing.T) {
	n := startNode(t, nodeOptions{})
	bindQueue(t, n, "orders.pending")
	cfg := cdcConfig(n)
	cfg.RoutingKey = "orders.{{ new.status }}"
	s := newSink(t, cfg)
	evs := sinktest.Events(2, 2)
	lost := evs[1]
	lost.New = &decoder.Row{Names: lost.New.Names, Values: []json.RawMessage{lost.New.Values[0], json.RawMessage(`"lost"`), lost.New.Values[2]}}
	if err := s.Deliver(context.Background(), evs[0]); err != nil {
		t.Fatal(err)
	}
	n.Kill()
	n.Start()

	// The first deliveries may still see the old connection fail.
	var err error
	for range 50 {
		err = s.Deliver(context.Background(), lost)
		if c := sinks.Class(err); c != "connection_closed" && c != "disconnected" && c != "connect" {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if sinks.Class(err) != "unroutable" || !pipeline.Retryable(err) {
		t.Fatalf("unexpected error after the reconnection; got %v (class %s); want a transient unroutable", err, sinks.Class(err))
	}
	t.Logf("%v", err)

	// A sink whose connection never broke: permanent, as before.
	if err := newSink(t, cfg).Deliver(context.Background(), lost); sinks.Class(err) != "unroutable" || pipeline.Retryable(err) {
		t.Fatalf("unexpected error on an unbroken connection; got %v (class %s); want a permanent unroutable", err, sinks.Class(err))
	}

	// A queue is bound for it now: the retry delivers.
	bindQueue(t, n, "orders.lost")
	if err := s.Deliver(context.Background(), lost); err != nil {
		t.Fatalf("unexpected error once bound: %v", err)
	}
	checkMessages(t, drain(t, n), evs, true)
}

func TestConfigValidate(t *testing.T) {
	f := func(cfg Config, want string) {
		t.Helper()
		sinktest.WantError(t, cfg.Validate(), want, "s3cret")
	}
	u := "amqp://obs:s3cret@127.0.0.1:5672/vh"
	f(Config{URL: configs.NewSecret(u), RoutingKey: "q"}, "")
	f(Config{URL: configs.NewSecret("amqps://obs:s3cret@mq.internal/"), Exchange: "cdc", TLS: &sinks.TLSFiles{ServerName: "mq"}}, "")
	f(Config{RoutingKey: "q"}, "url: required")
	f(Config{URL: configs.NewSecret("http://obs:s3cret@h/"), RoutingKey: "q"}, "url: scheme must be amqp or amqps")
	f(Config{URL: configs.NewSecret("amqp://obs:s3cret@h:bad port/"), RoutingKey: "q"}, "url: not a valid URL")
	f(Config{URL: configs.NewSecret(u), RoutingKey: "q", TLS: &sinks.TLSFiles{}}, "tls: needs an amqps:// url")
	f(Config{URL: configs.NewSecret(u)}, "routing_key: required with the default exchange")
	f(Config{URL: configs.NewSecret(u), RoutingKey: "{{ oops"}, "routing_key:")
	f(Config{URL: configs.NewSecret(u), Exchange: "{{ oops", RoutingKey: "k"}, "exchange:")
	f(Config{URL: configs.NewSecret(u), Exchange: "cdc.{{ event.table }}", RoutingKey: "k", Declare: &Declare{}}, "declare: name is required")
	f(Config{URL: configs.NewSecret(u), Exchange: "cdc", RoutingKey: "k", Declare: &Declare{Kind: "x-delayed"}}, "declare: kind must be")
	cfg := Config{URL: configs.NewSecret(u), Exchange: "cdc", RoutingKey: "k", Declare: &Declare{}}
	cfg.Defaults()
	if err := cfg.Validate(); err != nil || cfg.Timeout != DefaultTimeout || cfg.MaxMessageBytes != DefaultMaxMessageBytes ||
		cfg.Declare.Name != "cdc" || cfg.Declare.Kind != "topic" {
		t.Fatalf("unexpected defaults: %+v %+v (%v)", cfg, cfg.Declare, err)
	}
}
