package service

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/fraiseql/fraiseql-observers/configs"
	"github.com/fraiseql/fraiseql-observers/decoder"
	"github.com/fraiseql/fraiseql-observers/internal/pgtest"
	"github.com/fraiseql/fraiseql-observers/internal/sinktest"
	"github.com/fraiseql/fraiseql-observers/pipeline"
)

// eventSink keeps every event delivered to it.
type eventSink struct {
	mu  sync.Mutex
	evs []*decoder.Event
}

func (s *eventSink) Deliver(_ context.Context, ev *decoder.Event) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.evs = append(s.evs, ev)
	return nil
}

func (s *eventSink) events() []*decoder.Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*decoder.Event(nil), s.evs...)
}

// natsConfig loads a configuration of the nats transport at url for db: one
// observer of INSERTs and UPDATEs on table docs.
func natsConfig(t *testing.T, db *pgtest.DB, url string) *configs.Config {
	t.Helper()
	path := filepath.Join(t.TempDir(), "config.yaml")
	yaml := fmt.Sprintf(`
listener_id: parity
source: {dsn: %q, slot: obs_slot, publication: obs_pub, manage_slot: true, status_interval: 1s,
         reconnect: {initial_delay: 100ms, max_delay: 1s}}
checkpoints: {interval: 200ms}
admin: {listen: ""}
transport: {type: nats, url: %q, partitions: 2, lease_ttl: 2s}
observers:
  docs:
    entity: docs
    event_type: [INSERT, UPDATE]
    actions: [{type: log, name: out}]
`, db.DSN(), url)
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, _, err := configs.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// startRole starts the service of cfg in role, delivering to sink.
func startRole(t *testing.T, cfg *configs.Config, role string, sink pipeline.Sink) *running {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	svc, err := New(ctx, cfg, testLogger(t), Options{Actions: testActions{cfg, sink}, Version: "test", Role: role})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	r := &running{svc: svc, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- svc.Run(ctx) }()
	return r
}

// TestTransportToastFilledByReader: an UPDATE that leaves a TOASTed column unchanged
// (REPLICA IDENTITY DEFAULT: PostgreSQL does not send it) reaches an executor
// complete, although the executor never saw the row's INSERT: the partition moved
// to a new executor process between the two. The reader fills it from its row
// cache before publishing, as the in-process pipeline does.
func TestTransportToastFilledByReader(t *testing.T) {
	_, url := sinktest.StartJetStream(t, "")
	db := pgtest.NewDB(t)
	db.Exec(`CREATE TABLE docs (id int PRIMARY KEY, body text NOT NULL, v int NOT NULL); CREATE PUBLICATION obs_pub FOR TABLE docs`)
	cfg := natsConfig(t, db, url)
	reader := startRole(t, cfg, RoleReader, &eventSink{})
	defer reader.stop(t, 30*time.Second)
	waitFor(t, time.Minute, "the reader to be ready", func() bool { return reader.svc.Ready() == nil })

	first := &eventSink{}
	ex := startRole(t, cfg, RoleExecutor, first)
	// 200 md5 digests: 6400 characters that pglz barely compresses, stored out of line.
	db.Exec(`INSERT INTO docs SELECT 1, string_agg(md5(i::text), ''), 0 FROM generate_series(1, 200) i`)
	waitFor(t, 30*time.Second, "the INSERT at the first executor", func() bool { return len(first.events()) == 1 })
	if err := ex.stop(t, 30*time.Second); err != nil {
		t.Fatalf("unexpected executor outcome %v", err)
	}

	second := &eventSink{} // a new process: nothing of the row in memory
	ex = startRole(t, cfg, RoleExecutor, second)
	defer ex.stop(t, 30*time.Second)
	db.Exec(`UPDATE docs SET v = 1 WHERE id = 1`)
	waitFor(t, 30*time.Second, "the UPDATE at the second executor", func() bool { return len(second.events()) == 1 })
	ev := second.events()[0]
	body, ok := ev.New.Get("body")
	if ev.Op != decoder.OpUpdate || !ok || len(body) != 6400+2 || len(ev.Unavailable) != 0 {
		t.Fatalf("unexpected UPDATE at the executor: op %v, body %d bytes (found %v), unavailable %v; want the 6400-character body, nothing unavailable",
			ev.Op, len(body), ok, ev.Unavailable)
	}
	if ev.OldKind != decoder.OldCached || fmt.Sprint(ev.Changed) != "[v]" {
		t.Fatalf("unexpected old_kind %v, changed %v; want cached, [v]", ev.OldKind, ev.Changed)
	}
}
