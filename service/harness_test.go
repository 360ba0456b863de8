package service

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/fraiseql/fraiseql-observers/configs"
	"github.com/fraiseql/fraiseql-observers/decoder"
	"github.com/fraiseql/fraiseql-observers/internal/pgtest"
	"github.com/fraiseql/fraiseql-observers/pipeline"
	"github.com/fraiseql/fraiseql-observers/sinks"
)

// testActions is the executor side of the tests: every configured action delivers to
// one sink.
type testActions struct {
	cfg  *configs.Config
	sink pipeline.Sink
}

func (a testActions) Check(context.Context) error { return nil }
func (a testActions) PoolSize() int32             { return 6 }

func (a testActions) Templates(*configs.Action) []sinks.TemplateSource { return nil }

func (a testActions) Build(_ context.Context, _ ActionDeps) ([]*pipeline.Observer, error) {
	var out []*pipeline.Observer
	for _, co := range a.cfg.Observers {
		strategy, err := pipeline.ParseBackoff(string(co.Retry.BackoffStrategy))
		if err != nil {
			return nil, err
		}
		failure, err := pipeline.ParseFailurePolicy(string(co.OnFailure))
		if err != nil {
			return nil, err
		}
		o := &pipeline.Observer{Name: co.Name, Ops: co.Ops, Schema: co.Table.Schema, Table: co.Table.Table}
		for _, ca := range co.Actions {
			o.Actions = append(o.Actions, &pipeline.Action{ID: ca.ID, Type: ca.Type, Sink: a.sink, OnFailure: failure, Concurrency: 1, BatchSize: 1,
				Retry: pipeline.RetryPolicy{MaxAttempts: co.Retry.MaxAttempts, Strategy: strategy, Initial: co.Retry.InitialDelay, Max: co.Retry.MaxDelay}})
		}
		out = append(out, o)
	}
	return out, nil
}

// recorder is a sink that keeps the id of every event delivered to it. With block set
// it accepts nothing: each delivery waits until its context ends.
type recorder struct {
	block     bool
	entered   atomic.Int64 // deliveries started
	cancelled atomic.Int64 // deliveries that ended with their context (block)
	mu        sync.Mutex
	ids       []string
}

func (r *recorder) Deliver(ctx context.Context, ev *decoder.Event) error {
	r.entered.Add(1)
	if r.block {
		<-ctx.Done()
		r.cancelled.Add(1)
		return ctx.Err()
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ids = append(r.ids, ev.ID.String())
	return nil
}

func (r *recorder) delivered() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.ids...)
}

// testConfig loads a configuration for db: one observer of INSERTs on table t, the
// slot obs_slot of publication obs_pub, and extra top-level YAML.
func testConfig(t *testing.T, db *pgtest.DB, listener, extra string) *configs.Config {
	t.Helper()
	return testConfigDSN(t, db.DSN(), listener, extra)
}

// testConfigDSN is testConfig for the database at dsn.
func testConfigDSN(t *testing.T, dsn, listener, extra string) *configs.Config {
	t.Helper()
	path := filepath.Join(t.TempDir(), "config.yaml")
	yaml := fmt.Sprintf(`
listener_id: %s
source: {dsn: %q, slot: obs_slot, publication: obs_pub, manage_slot: true, status_interval: 1s,
         reconnect: {initial_delay: 100ms, max_delay: 1s}}
checkpoints: {interval: 200ms}
admin: {listen: ""}
%s
observers:
  all:
    entity: t
    event_type: INSERT
    actions: [{type: log, name: out}]
`, listener, dsn, extra)
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, _, err := configs.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// newDB creates a database with table t in publication obs_pub.
func newDB(t *testing.T) *pgtest.DB {
	t.Helper()
	db := pgtest.NewDB(t)
	db.Exec(`CREATE TABLE t (id int PRIMARY KEY, v int NOT NULL); CREATE PUBLICATION obs_pub FOR TABLE t`)
	return db
}

// running is a service started by start: Run's outcome arrives on done.
type running struct {
	svc    *Service
	cancel context.CancelFunc
	done   chan error
}

// start builds the service (New returns once it leads) and runs it.
func start(t *testing.T, cfg *configs.Config, sink pipeline.Sink) *running {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	svc, err := New(ctx, cfg, testLogger(t), Options{Actions: testActions{cfg, sink}, Version: "test"})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	r := &running{svc: svc, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- svc.Run(ctx) }()
	return r
}

// stop cancels the service and returns Run's outcome, failing the test when Run does
// not return within d.
func (r *running) stop(t *testing.T, d time.Duration) error {
	t.Helper()
	r.cancel()
	return r.wait(t, d)
}

// wait returns Run's outcome, failing the test when Run does not return within d.
func (r *running) wait(t *testing.T, d time.Duration) error {
	t.Helper()
	select {
	case err := <-r.done:
		return err
	case <-time.After(d):
		t.Fatalf("Run did not return within %v", d)
		return nil
	}
}

// testLogger writes the service's log into the test's log.
func testLogger(t *testing.T) zerolog.Logger {
	return zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.DebugLevel).With().Timestamp().Logger()
}

// waitFor polls cond until it holds, failing the test after d.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// countingWriter keeps what is written to it (a log) and counts lines holding a text.
type countingWriter struct {
	mu  sync.Mutex
	buf strings.Builder
}

func (w *countingWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.Write(p)
}

func (w *countingWriter) count(text string) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return strings.Count(w.buf.String(), text)
}
