package nats

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	natsio "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/fraiseql/fraiseql-observers/configs"
	"github.com/fraiseql/fraiseql-observers/decoder"
	"github.com/fraiseql/fraiseql-observers/internal/sinktest"
	"github.com/fraiseql/fraiseql-observers/pipeline"
	"github.com/fraiseql/fraiseql-observers/sinks"
)

const subject = "cdc.{{ event.table }}.{{ event.op }}"

// letters checks that the DLQ holds n letters, each of class after attempts.
func letters(t *testing.T, d *sinktest.DLQ, n int, class string, attempts int) {
	t.Helper()
	ls := d.Snapshot()
	if len(ls) != n {
		t.Fatalf("unexpected dead letters; got %d; want %d", len(ls), n)
	}
	for _, l := range ls {
		if sinks.Class(l.Err) != class || l.Attempts != attempts {
			t.Fatalf("unexpected letter; got class %s after %d attempts (%v); want %s after %d", sinks.Class(l.Err), l.Attempts, l.Err, class, attempts)
		}
	}
}

func duplicates(set *metrics.Set) uint64 {
	return set.GetOrCreateCounter(`observer_nats_duplicates_total{action="test.nats"}`).Get()
}

// TestPublish publishes events one by one and in asynchronous batches; each is stored
// once with Nats-Msg-Id = event id. Publishing them again stores nothing: JetStream
// acknowledges duplicates, which count as delivered and in the duplicates metric.
func TestPublish(t *testing.T) {
	srv := startNATS(t, "")
	st := createStream(t, jsClient(t, srv.url))
	evs := sinktest.Events(2000, 200)
	set := metrics.NewSet()
	sink := openSink(t, Config{URL: configs.NewSecret(srv.url), Subject: subject, Stream: "CDC"}, set)

	sinktest.NoDLQ(t, sinktest.Run(t, noClose{sink}, evs[:1000], sinktest.RunOptions{}))
	sinktest.NoDLQ(t, sinktest.Run(t, noClose{sink}, evs[1000:], sinktest.RunOptions{BatchSize: 64}))
	if dups := checkStored(t, readAll(t, st), evs, "cdc.orders.INSERT"); dups != 0 || duplicates(set) != 0 {
		t.Fatalf("unexpected duplicates; got %d stored, %d counted; want 0", dups, duplicates(set))
	}

	// Replay: everything again, one by one and in batches.
	sinktest.NoDLQ(t, sinktest.Run(t, noClose{sink}, evs[:1000], sinktest.RunOptions{BatchSize: 64}))
	sinktest.NoDLQ(t, sinktest.Run(t, noClose{sink}, evs[1000:], sinktest.RunOptions{}))
	info, err := st.Info(sinktest.Context(t))
	if err != nil || info.State.Msgs != 2000 {
		t.Fatalf("unexpected stream size after the replay; got %d, %v; want 2000", info.State.Msgs, err)
	}
	if got := duplicates(set); got != 2000 {
		t.Fatalf("unexpected duplicates metric; got %d; want 2000", got)
	}
}

// TestServerRestart kills nats-server mid-run and starts it again on the same store.
// Every event ends up in the stream; events whose PubAck was lost are published again
// with the same Nats-Msg-Id. The server stays down longer than the publish timeout:
// nats.go buffers publishes while it reconnects, so a shorter outage may cost no
// delivery at all.
func TestServerRestart(t *testing.T) {
	srv := startNATS(t, "")
	st := createStream(t, jsClient(t, srv.url))
	evs := sinktest.Events(4000, 400)
	sink := sinktest.KillAfter(openSink(t, Config{URL: configs.NewSecret(srv.url), Subject: subject, Stream: "CDC", Timeout: 2 * time.Second}, nil), 1000, srv.Process)
	sink.Down = 3 * time.Second
	d := sinktest.Run(t, sink, evs, sinktest.RunOptions{BatchSize: 50,
		Retry: pipeline.RetryPolicy{MaxAttempts: 300, Strategy: pipeline.BackoffFixed, Initial: 200 * time.Millisecond}})
	sink.Wait(t)
	sinktest.NoDLQ(t, d)
	dups := checkStored(t, readAll(t, st), evs, "cdc.orders.INSERT")
	t.Logf("%d duplicates stored", dups)
}

// bigEvent returns ev with a status value of n bytes.
func bigEvent(ev *decoder.Event, n int) *decoder.Event { return withStatus(ev, strings.Repeat("x", n)) }

// withStatus returns ev with status set to status.
func withStatus(ev *decoder.Event, status string) *decoder.Event {
	v, _ := json.Marshal(status)
	return &decoder.Event{ID: ev.ID, LSN: ev.LSN, Xid: ev.Xid, CommitTime: ev.CommitTime, Schema: ev.Schema,
		Table: ev.Table, Op: ev.Op, Key: ev.Key,
		New: &decoder.Row{Names: ev.New.Names, Values: []json.RawMessage{ev.New.Values[0], v, ev.New.Values[2]}}}
}

// TestMaxPayload: an event larger than the server's max_payload is a permanent
// failure (too_large), parked after one attempt; the others of its batch are stored.
func TestMaxPayload(t *testing.T) {
	srv := startNATS(t, "max_payload: 1024")
	st := createStream(t, jsClient(t, srv.url))
	evs := sinktest.Events(20, 20)
	for i := 0; i < len(evs); i += 4 {
		evs[i] = bigEvent(evs[i], 2000)
	}
	sink := openSink(t, Config{URL: configs.NewSecret(srv.url), Subject: subject}, nil)
	for _, batch := range []int{1, 8} {
		d := sinktest.Run(t, noClose{sink}, evs, sinktest.RunOptions{BatchSize: batch})
		letters(t, d, 5, "too_large", 1)
	}
	var small []*decoder.Event
	for i, ev := range evs {
		if i%4 != 0 {
			small = append(small, ev)
		}
	}
	checkStored(t, readAll(t, st), small, "cdc.orders.INSERT")
}

// TestNoStream: without a stream for the subject, a publish has no responder: a
// transient failure (an operator may create the stream), retried, then parked. With
// the stream key, the missing stream is an error at start.
func TestNoStream(t *testing.T) {
	srv := startNATS(t, "")
	sink := openSink(t, Config{URL: configs.NewSecret(srv.url), Subject: "nowhere.{{ event.table }}", Timeout: time.Second}, nil)
	retry := pipeline.RetryPolicy{MaxAttempts: 2, Strategy: pipeline.BackoffFixed}
	for _, batch := range []int{1, 4} {
		d := sinktest.Run(t, noClose{sink}, sinktest.Events(4, 4), sinktest.RunOptions{BatchSize: batch, Retry: retry})
		letters(t, d, 4, "no_stream", 2)
	}

	_, err := New(sinktest.Context(t), Config{URL: configs.NewSecret(srv.url), Subject: "cdc.x", Stream: "MISSING"}, sinks.Deps{})
	if err == nil || !strings.Contains(err.Error(), `stream "MISSING" does not exist`) {
		t.Fatalf("unexpected error for a missing stream; got %v", err)
	}
	createStream(t, jsClient(t, srv.url))
	_, err = New(sinktest.Context(t), Config{URL: configs.NewSecret(srv.url), Subject: "other.x", Stream: "CDC"}, sinks.Deps{})
	if err == nil || !strings.Contains(err.Error(), `does not capture subject "other.x"`) {
		t.Fatalf("unexpected error for a subject outside the stream; got %v", err)
	}
	s := openSink(t, Config{URL: configs.NewSecret(srv.url), Subject: "cdc.orders", Stream: "CDC"}, nil)
	if err := s.Deliver(sinktest.Context(t), sinktest.Events(1, 1)[0]); err != nil {
		t.Fatal(err)
	}

	// A rendered subject that another stream captures is refused (expected stream
	// mismatch), not stored there.
	js := jsClient(t, srv.url)
	other, err := js.CreateStream(sinktest.Context(t), jetstream.StreamConfig{Name: "OTHER", Subjects: []string{"other.>"}})
	if err != nil {
		t.Fatal(err)
	}
	s = openSink(t, Config{URL: configs.NewSecret(srv.url), Subject: "other.{{ event.table }}", Stream: "CDC"}, nil)
	for _, batch := range []int{1, 4} {
		d := sinktest.Run(t, noClose{s}, sinktest.Events(4, 4), sinktest.RunOptions{BatchSize: batch})
		letters(t, d, 4, "js_10060", 1)
	}
	if info, err := other.Info(sinktest.Context(t)); err != nil || info.State.Msgs != 0 {
		t.Fatalf("unexpected messages in the other stream; got %d, %v", info.State.Msgs, err)
	}
}

// TestPubAckTimeout: a core NATS subscriber that never answers takes the publish, so
// no PubAck comes: a transient timeout after the configured wait.
func TestPubAckTimeout(t *testing.T) {
	srv := startNATS(t, "")
	nc, err := natsio.Connect(srv.url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	sub, err := nc.SubscribeSync("silent.>")
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	nc.Flush()
	sink := openSink(t, Config{URL: configs.NewSecret(srv.url), Subject: "silent.{{ event.table }}", Timeout: 300 * time.Millisecond}, nil)
	for _, batch := range []int{1, 4} {
		d := sinktest.Run(t, noClose{sink}, sinktest.Events(4, 4), sinktest.RunOptions{BatchSize: batch,
			Retry: pipeline.RetryPolicy{MaxAttempts: 2, Strategy: pipeline.BackoffFixed}})
		letters(t, d, 4, "timeout", 2)
	}
}

// TestBadSubject: a subject rendered with a space or a wildcard from a row value is a
// permanent failure of that event.
func TestBadSubject(t *testing.T) {
	srv := startNATS(t, "")
	createStream(t, jsClient(t, srv.url))
	sink := openSink(t, Config{URL: configs.NewSecret(srv.url), Subject: "cdc.{{ new.status }}"}, nil)
	evs := sinktest.Events(5, 5)
	for i, status := range []string{"", "a b", "a.*", "a.>", "a..b"} {
		evs[i] = withStatus(evs[i], status)
	}
	for _, batch := range []int{1, 5} {
		d := sinktest.Run(t, noClose{sink}, evs, sinktest.RunOptions{BatchSize: batch})
		letters(t, d, 5, "bad_subject", 1)
	}
	sinktest.NoDLQ(t, sinktest.Run(t, noClose{sink}, sinktest.Events(3, 3), sinktest.RunOptions{}))
}

// TestAuth connects with a token and with a user and password; wrong credentials
// fail at start.
func TestAuth(t *testing.T) {
	f := func(extra string, good, bad Config, client natsio.Option) {
		t.Helper()
		srv := startNATS(t, extra)
		for _, c := range []*Config{&good, &bad} {
			c.URL, c.Subject = configs.NewSecret(srv.url), "cdc.orders"
		}
		if _, err := New(sinktest.Context(t), bad, sinks.Deps{}); err == nil || !strings.Contains(strings.ToLower(err.Error()), "authorization") {
			t.Fatalf("unexpected error with wrong credentials; got %v", err)
		}
		createStream(t, jsClient(t, good.URL.Value(), client))
		s := openSink(t, good, nil)
		if err := s.Deliver(sinktest.Context(t), sinktest.Events(1, 1)[0]); err != nil {
			t.Fatal(err)
		}
	}
	f(`authorization { token: "s3cret-token" }`, Config{Token: configs.NewSecret("s3cret-token")}, Config{Token: configs.NewSecret("wrong")}, natsio.Token("s3cret-token"))
	f(`authorization { user: "obs", password: "s3cret-pass" }`, Config{User: configs.NewSecret("obs"), Password: configs.NewSecret("s3cret-pass")}, Config{User: configs.NewSecret("obs"), Password: configs.NewSecret("wrong")},
		natsio.UserInfo("obs", "s3cret-pass"))
}

// TestDown: with no server, New fails within the dial timeout.
func TestDown(t *testing.T) {
	port := sinktest.FreePort(t)
	_, err := New(sinktest.Context(t), Config{URL: configs.NewSecret("nats://127.0.0.1:" + strconv.Itoa(port)), Subject: "cdc.x", DialTimeout: time.Second}, sinks.Deps{})
	if err == nil || !strings.Contains(err.Error(), "connect to nats") {
		t.Fatalf("unexpected error; got %v", err)
	}
}
