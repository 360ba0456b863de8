package registry

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"go.uber.org/goleak"

	"github.com/fraiseql/fraiseql-observers/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m, pgtest.Options{}) }

func newStore(t *testing.T) (*Store, *pgtest.DB) {
	t.Helper()
	db := pgtest.NewDB(t)
	pool := pgtest.Pool(t, db.DSN())
	s := NewStore(pool, "obs", "slot")
	if err := s.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	return s, db
}

func TestRegistryLeaderAndHealth(t *testing.T) {
	s, db := newStore(t)
	ctx := context.Background()
	if p := pgtest.QueryValue[string](db, `SELECT relpersistence::text FROM pg_class WHERE oid = 'obs.observer_listeners'::regclass`); p != "u" {
		t.Fatalf("unexpected persistence; got %q; want u (UNLOGGED: heartbeats write no WAL)", p)
	}
	now := time.Now()
	put := func(id, state string, streaming bool, epoch int64) {
		t.Helper()
		if err := s.Upsert(ctx, Record{ListenerID: id, Host: "h", PID: 1, Version: "v", State: state, Streaming: streaming,
			Epoch: epoch, StartedAt: now, Interval: time.Hour}); err != nil {
			t.Fatal(err)
		}
	}
	put("listener-1", StateStreaming, true, 3)
	put("listener-2", StateReconnecting, false, 2)
	put("listener-3", StateStreaming, true, 1)
	ls, err := s.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if leader, healthy, total := Leader(ls); leader != "listener-1" || healthy != 2 || total != 3 {
		t.Fatalf("unexpected leader line; got %s (%d/%d); want listener-1 (2/3)", leader, healthy, total)
	}
	// A heartbeat older than three intervals is unhealthy.
	db.Exec(`UPDATE obs.observer_listeners SET last_heartbeat = now() - interval '4 hours' WHERE listener_id = 'listener-1'`)
	ls, _ = s.List(ctx)
	if leader, healthy, total := Leader(ls); leader != "listener-3" || healthy != 1 || total != 3 {
		t.Fatalf("unexpected leader line after a stale heartbeat; got %s (%d/%d); want listener-3 (1/3)", leader, healthy, total)
	}
	put("listener-3", StateStopped, false, 1)
	ls, _ = s.List(ctx)
	if leader, healthy, _ := Leader(ls); leader != "" || healthy != 0 {
		t.Fatalf("unexpected leader after every instance stopped; got %q (%d healthy)", leader, healthy)
	}
}

func TestHeartbeatGauge(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent(), goleak.IgnoreTopFunction("github.com/jackc/pgx/v5/pgxpool.(*Pool).backgroundHealthCheck"))
	s, _ := newStore(t)
	set := metrics.NewSet()
	streaming := false
	h := NewHeartbeat(HeartbeatOptions{Store: s, Interval: time.Hour, Metrics: set, Record: func() Record {
		st := StateStarting
		if streaming {
			st = StateStreaming
		}
		return Record{ListenerID: "l-1", State: st, Streaming: streaming, Healthy: streaming, StartedAt: time.Now()}
	}})
	gauge := func() string {
		var b strings.Builder
		set.WritePrometheus(&b)
		return strings.TrimSpace(b.String())
	}
	if g := gauge(); g != `observer_listener_health{listener_id="l-1"} 0` {
		t.Fatalf("unexpected gauge before any heartbeat; got %q", g)
	}
	streaming = true
	if err := h.Beat(context.Background()); err != nil {
		t.Fatal(err)
	}
	if g := gauge(); g != `observer_listener_health{listener_id="l-1"} 1` {
		t.Fatalf("unexpected gauge while streaming; got %q", g)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- h.Run(ctx) }()
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
