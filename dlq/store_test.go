package dlq

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fraiseql/fraiseql-observers/internal/pgtest"
	"github.com/fraiseql/fraiseql-observers/internal/sinktest"
	"github.com/fraiseql/fraiseql-observers/pipeline"
	"github.com/fraiseql/fraiseql-observers/sinks"
)

func TestMain(m *testing.M) { pgtest.Main(m, pgtest.Options{}) }

func newStore(t *testing.T, max int64) (*Store, *pgtest.DB, *metrics.Set) {
	t.Helper()
	db := pgtest.NewDB(t)
	pool, err := pgxpool.New(context.Background(), db.DSN())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	set := metrics.NewSet()
	s := NewStore(pool, Options{Slot: "slot", MaxSize: max, Metrics: set})
	if err := s.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	return s, db, set
}

func TestPutIsIdempotentAndComplete(t *testing.T) {
	s, db, _ := newStore(t, 0)
	ctx := context.Background()
	ev := sinktest.Events(1, 1)[0]
	// A json column may hold "\u0000", which jsonb would reject: the letter must still store.
	ev.New.Values[1] = json.RawMessage(`"a\u0000b"`)
	dl := pipeline.DeadLetter{Event: ev, Observer: "o", Action: "o.hook", ActionType: "webhook",
		Err: sinks.Permanent("http_400", errors.New("HTTP 400 Bad Request")), Attempts: 1,
		FirstTry: time.Now().Add(-time.Second), LastTry: time.Now()}
	if err := s.Put(ctx, dl); err != nil {
		t.Fatal(err)
	}
	dl.Attempts = 2
	if err := s.Put(ctx, dl); err != nil { // the same event again, after a crash and replay
		t.Fatal(err)
	}
	if n, err := s.Count(ctx); err != nil || n != 1 {
		t.Fatalf("unexpected count %d, %v; want 1", n, err)
	}
	row := pgtest.QueryValue[string](db, `SELECT concat_ws('|', event_id, observer, action, action_type, error, error_class, attempts, op, table_name) FROM observer_dlq`)
	want := ev.ID.String() + "|o|o.hook|webhook|HTTP 400 Bad Request|permanent|2|INSERT|orders"
	if row != want {
		t.Fatalf("unexpected row; got %q; want %q", row, want)
	}
	if js := pgtest.QueryValue[string](db, `SELECT event::text FROM observer_dlq`); !strings.Contains(js, `"id":"`+ev.ID.String()+`"`) {
		t.Fatalf("stored event JSON lacks the id: %s", js)
	}
}

func TestFullQueueHoldsInsteadOfDropping(t *testing.T) {
	s, _, set := newStore(t, 2)
	ctx := context.Background()
	evs := sinktest.Events(3, 3)
	for i, ev := range evs {
		err := s.Put(ctx, pipeline.DeadLetter{Event: ev, Observer: "o", Action: "o.0", ActionType: "t", Err: errors.New("x"), Attempts: 1})
		if i < 2 && err != nil {
			t.Fatal(err)
		}
		if i == 2 && !errors.Is(err, ErrFull) {
			t.Fatalf("third put into a queue of 2; got %v; want ErrFull", err)
		}
	}
	if v := set.GetOrCreateCounter("observer_dlq_overflow_total").Get(); v != 1 {
		t.Fatalf("unexpected overflow counter %d", v)
	}
}
