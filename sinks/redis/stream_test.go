package redis

import (
	"strconv"
	"testing"

	goredis "github.com/redis/go-redis/v9"

	"github.com/fraiseql/fraiseql-observers/configs"
	"github.com/fraiseql/fraiseql-observers/decoder"
	"github.com/fraiseql/fraiseql-observers/internal/sinktest"
	"github.com/fraiseql/fraiseql-observers/pipeline"
	"github.com/fraiseql/fraiseql-observers/sinks"
)

func newStream(t *testing.T, cfg StreamConfig) *Stream {
	t.Helper()
	s, err := NewStream(t.Context(), cfg, sinks.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// readStream returns the stream's entries, failing the test on an error.
func readStream(t *testing.T, rc *goredis.Client, key string) []goredis.XMessage {
	t.Helper()
	msgs, err := rc.XRange(sinktest.Context(t), key, "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	return msgs
}

// checkEntries checks that every event is in msgs at least once with its exact JSON,
// that nothing else is, and returns how many entries were duplicates.
func checkEntries(t *testing.T, msgs []goredis.XMessage, evs []*decoder.Event, extra map[string]func(*decoder.Event) string) int {
	t.Helper()
	want := map[string]*decoder.Event{}
	for _, ev := range evs {
		want[ev.ID.String()] = ev
	}
	seen := map[string]int{}
	for _, m := range msgs {
		id, _ := m.Values[FieldEventID].(string)
		ev := want[id]
		if ev == nil {
			t.Fatalf("unexpected entry %s with event_id %q", m.ID, id)
		}
		if got, _ := m.Values[FieldEvent].(string); got != string(ev.JSON()) {
			t.Fatalf("unexpected event JSON for %s; got %s; want %s", id, got, ev.JSON())
		}
		if len(m.Values) != 2+len(extra) {
			t.Fatalf("unexpected fields for %s; got %v", id, m.Values)
		}
		for f, val := range extra {
			if got := m.Values[f]; got != val(ev) {
				t.Fatalf("unexpected field %s for %s; got %v; want %s", f, id, got, val(ev))
			}
		}
		seen[id]++
	}
	dups := 0
	for id := range want {
		if seen[id] == 0 {
			t.Fatalf("event %s is missing from the stream", id)
		}
		dups += seen[id] - 1
	}
	return dups
}

func TestStreamXAdd(t *testing.T) {
	srv := startRedis(t)
	rc := srv.client(t)
	evs := sinktest.Events(1000, 100)
	f := func(batch int) {
		t.Helper()
		cfg := StreamConfig{ConnConfig: ConnConfig{URL: configs.NewSecret(srv.url())}, Stream: "cdc:{{ event.table }}", Fields: []string{"op", "table"}}
		sinktest.NoDLQ(t, sinktest.Run(t, newStream(t, cfg), evs, sinktest.RunOptions{BatchSize: batch}))
		msgs := readStream(t, rc, "cdc:orders")
		if dups := checkEntries(t, msgs, evs, map[string]func(*decoder.Event) string{
			FieldTable: func(ev *decoder.Event) string { return "public.orders" },
			FieldOp:    func(ev *decoder.Event) string { return "INSERT" },
		}); dups != 0 {
			t.Fatalf("unexpected duplicates without faults; got %d", dups)
		}
		rc.Del(sinktest.Context(t), "cdc:orders")
	}
	f(1)
	f(50)
}

// TestStreamMaxLen: MAXLEN ~ N keeps at least N entries and trims whole nodes (100
// entries each by default), so the stream stays below N plus a node.
func TestStreamMaxLen(t *testing.T) {
	srv := startRedis(t)
	rc := srv.client(t)
	cfg := StreamConfig{ConnConfig: ConnConfig{URL: configs.NewSecret(srv.url())}, Stream: "cdc", MaxLen: 200}
	evs := sinktest.Events(3000, 100)
	sinktest.NoDLQ(t, sinktest.Run(t, newStream(t, cfg), evs, sinktest.RunOptions{BatchSize: 20}))
	n, err := rc.XLen(sinktest.Context(t), "cdc").Result()
	if err != nil || n < 200 || n > 300 {
		t.Fatalf("unexpected stream length; got %d, %v; want 200..300", n, err)
	}
}

// TestStreamServerRestart kills redis-server mid-run; it restarts with AOF fsynced on
// every write, so every acknowledged XADD survives. After recovery every event is in
// the stream at least once, with its stable event_id and exact JSON.
func TestStreamServerRestart(t *testing.T) {
	srv := startRedis(t, "--appendonly", "yes", "--appendfsync", "always")
	evs := sinktest.Events(3000, 300)
	cfg := StreamConfig{ConnConfig: ConnConfig{URL: configs.NewSecret(srv.url())}, Stream: "cdc"}
	sink := sinktest.KillAfter(newStream(t, cfg), 800, srv.Process)
	d := sinktest.Run(t, sink, evs, sinktest.RunOptions{BatchSize: 25, Retry: patient})
	sink.Wait(t)
	sinktest.NoDLQ(t, d)
	dups := checkEntries(t, readStream(t, srv.client(t), "cdc"), evs, nil)
	t.Logf("%d duplicate entries (replies lost to the kill)", dups)
}

// TestStreamWrongType: a stream key holding a string is refused with WRONGTYPE,
// permanent: each event goes to the DLQ after one attempt.
func TestStreamWrongType(t *testing.T) {
	srv := startRedis(t)
	rc := srv.client(t)
	if err := rc.Set(sinktest.Context(t), "cdc", "not a stream", 0).Err(); err != nil {
		t.Fatal(err)
	}
	f := func(batch int) {
		t.Helper()
		cfg := StreamConfig{ConnConfig: ConnConfig{URL: configs.NewSecret(srv.url())}, Stream: "cdc"}
		d := sinktest.Run(t, newStream(t, cfg), sinktest.Events(10, 10), sinktest.RunOptions{BatchSize: batch})
		letters := d.Snapshot()
		if len(letters) != 10 {
			t.Fatalf("unexpected dead letters; got %d; want 10", len(letters))
		}
		for _, l := range letters {
			if sinks.Class(l.Err) != "wrongtype" || l.Attempts != 1 || pipeline.Retryable(l.Err) {
				t.Fatalf("unexpected letter; got class %s after %d attempts (%v); want wrongtype after 1", sinks.Class(l.Err), l.Attempts, l.Err)
			}
		}
	}
	f(1)
	f(10)
}

// TestStreamOOM: XADD may grow memory, so a full Redis under noeviction refuses it
// with OOM, a transient class: retried, then parked when the retries run out.
func TestStreamOOM(t *testing.T) {
	srv := startRedis(t, "--maxmemory", "2mb", "--maxmemory-policy", "noeviction")
	fillOOM(t, srv.client(t), "fill:")
	cfg := StreamConfig{ConnConfig: ConnConfig{URL: configs.NewSecret(srv.url())}, Stream: "cdc"}
	d := sinktest.Run(t, newStream(t, cfg), sinktest.Events(4, 4), sinktest.RunOptions{BatchSize: 4,
		Retry: pipeline.RetryPolicy{MaxAttempts: 2, Strategy: pipeline.BackoffFixed}})
	letters := d.Snapshot()
	if len(letters) != 4 {
		t.Fatalf("unexpected dead letters; got %d; want 4", len(letters))
	}
	for _, l := range letters {
		if sinks.Class(l.Err) != "oom" || l.Attempts != 2 || !pipeline.Retryable(l.Err) {
			t.Fatalf("unexpected letter; got class %s after %d attempts (%v); want oom after 2", sinks.Class(l.Err), l.Attempts, l.Err)
		}
	}
}

// TestStreamDown: with no server, each attempt fails within the dial timeout as a
// transient connection error.
func TestStreamDown(t *testing.T) {
	port := sinktest.FreePort(t)
	cfg := StreamConfig{ConnConfig: ConnConfig{URL: configs.NewSecret("redis://127.0.0.1:" + strconv.Itoa(port))}, Stream: "cdc"}
	s := newStream(t, cfg)
	evs := sinktest.Events(2, 2)
	errs := make([]error, 2)
	s.DeliverBatch(sinktest.Context(t), evs, errs)
	for _, err := range append(errs, s.Deliver(sinktest.Context(t), evs[0])) {
		if sinks.Class(err) != "connection" || !pipeline.Retryable(err) {
			t.Fatalf("unexpected error; got %v (class %s); want a transient connection error", err, sinks.Class(err))
		}
	}
}

func TestStreamConfig(t *testing.T) {
	f := func(cfg StreamConfig, key, want string) {
		t.Helper()
		sinktest.WantKeyError(t, cfg.Validate(), key, want)
	}
	conn := ConnConfig{URL: configs.NewSecret("rediss://u:p@h:6380/1")}
	f(StreamConfig{ConnConfig: conn, Stream: "cdc:{{ event.table }}"}, "", "")
	f(StreamConfig{ConnConfig: conn, Stream: "s", Fields: []string{"event_id", "event", "table", "op"}}, "", "")
	f(StreamConfig{ConnConfig: conn}, "stream", "required")
	f(StreamConfig{ConnConfig: conn, Stream: "{{ }}"}, "stream", "empty placeholder")
	f(StreamConfig{ConnConfig: conn, Stream: "s", MaxLen: -1}, "maxlen", "negative")
	f(StreamConfig{ConnConfig: conn, Stream: "s", Fields: []string{"op", "op"}}, "fields", "twice")
	f(StreamConfig{ConnConfig: conn, Stream: "s", Fields: []string{"new"}}, "fields", "unknown field")
	f(StreamConfig{ConnConfig: ConnConfig{URL: configs.NewSecret("redis://h"), PoolSize: -1}, Stream: "s"}, "pool_size", "negative")
}

// TestTLS: rediss:// verifies the server's certificate: with the test CA as ca_file
// the sink appends; with the system roots every attempt fails as a transient tls error.
func TestTLS(t *testing.T) {
	certs := sinktest.NewCerts(t)
	port := sinktest.FreePort(t)
	addr := "127.0.0.1:" + strconv.Itoa(port)
	sinktest.StartProcess(t, addr, "redis-server", "--port", "0", "--tls-port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--tls-cert-file", certs.CertFile, "--tls-key-file", certs.KeyFile,
		"--tls-ca-cert-file", certs.CAFile, "--tls-auth-clients", "no", "--save", "", "--dir", t.TempDir())
	evs := sinktest.Events(10, 10)

	bad := newStream(t, StreamConfig{ConnConfig: ConnConfig{URL: configs.NewSecret("rediss://" + addr)}, Stream: "cdc"})
	if err := bad.Deliver(sinktest.Context(t), evs[0]); sinks.Class(err) != "tls" || !pipeline.Retryable(err) {
		t.Fatalf("unexpected error without the CA; got %v (class %s); want a transient tls error", err, sinks.Class(err))
	}
	good := newStream(t, StreamConfig{ConnConfig: ConnConfig{URL: configs.NewSecret("rediss://" + addr), CAFile: certs.CAFile}, Stream: "cdc"})
	sinktest.NoDLQ(t, sinktest.Run(t, good, evs, sinktest.RunOptions{BatchSize: 5}))
	rc := goredis.NewClient(&goredis.Options{Addr: addr, TLSConfig: good.client.Options().TLSConfig})
	defer rc.Close()
	checkEntries(t, readStream(t, rc, "cdc"), evs, nil)
}
