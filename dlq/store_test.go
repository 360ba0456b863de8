package dlq

import (
	"context"
	"encoding/json"
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/fraiseql/fraiseql-observers/decoder"
	"github.com/fraiseql/fraiseql-observers/internal/pgtest"
	"github.com/fraiseql/fraiseql-observers/internal/sinktest"
	"github.com/fraiseql/fraiseql-observers/pipeline"
	"github.com/fraiseql/fraiseql-observers/sinks"
	"github.com/fraiseql/fraiseql-observers/sinks/egress"
)

func TestMain(m *testing.M) { pgtest.Main(m, pgtest.Options{}) }

func newStore(t *testing.T, max int64) (*Store, *pgtest.DB, *metrics.Set) {
	t.Helper()
	db := pgtest.NewDB(t)
	pool := pgtest.Pool(t, db.DSN())
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
	dl := Letter{Event: ev, Observer: "o", Action: "o.hook", ActionType: "webhook",
		Err: sinks.Permanent("http_400", errors.New("HTTP 400 Bad Request")), ErrorClass: "http_400", Attempts: 1,
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
	want := ev.ID.String() + "|o|o.hook|webhook|HTTP 400 Bad Request|http_400|2|INSERT|orders"
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
		err := s.Put(ctx, Letter{Event: ev, Observer: "o", Action: "o.0", ActionType: "t", Err: errors.New("x"), ErrorClass: "transient", Attempts: 1})
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

func putLetters(t *testing.T, s *Store, n int, observer string, err error) {
	t.Helper()
	for _, ev := range sinktest.Events(n, n) {
		if e := s.Put(context.Background(), Letter{Event: ev, Observer: observer, Action: observer + ".a", ActionType: "file", Err: err, ErrorClass: pipeline.ErrorClass(err), Attempts: 3}); e != nil {
			t.Fatal(e)
		}
	}
}

func TestListStatsRetryRemove(t *testing.T) {
	s, _, set := newStore(t, 0)
	ctx := context.Background()
	putLetters(t, s, 3, "o1", errors.New("disk full"))
	putLetters(t, s, 2, "o2", sinks.Permanent("http_400", errors.New("HTTP 400")))
	gauge := func() float64 {
		var b strings.Builder
		set.WritePrometheus(&b)
		for _, line := range strings.Split(b.String(), "\n") {
			if v, ok := strings.CutPrefix(line, "observer_dlq_items_total "); ok {
				var f float64
				json.Unmarshal([]byte(v), &f)
				return f
			}
		}
		t.Fatalf("observer_dlq_items_total missing from\n%s", b.String())
		return 0
	}
	if g := gauge(); g != 5 {
		t.Fatalf("unexpected observer_dlq_items_total; got %v; want 5", g)
	}
	st, err := s.Stats(ctx, true, true)
	if err != nil {
		t.Fatal(err)
	}
	if st.Pending != 5 || len(st.ByObserver) != 2 || st.ByObserver[0].Observer != "o1" || st.ByObserver[0].Count != 3 ||
		len(st.ByError) != 2 || st.ByError[0].Error != "disk full" || st.ByError[1].ErrorClass != "http_400" {
		t.Fatalf("unexpected stats %+v", st)
	}
	items, err := s.List(ctx, ListOptions{Observer: "o2"})
	if err != nil || len(items) != 2 {
		t.Fatalf("unexpected list %v, %v", items, err)
	}
	page, err := s.List(ctx, ListOptions{Limit: 2, Offset: 1})
	if err != nil || len(page) != 2 || page[0].ID != items[0].ID-2 {
		t.Fatalf("unexpected page %+v, %v", page, err)
	}
	if later, _ := s.List(ctx, ListOptions{After: time.Now().Add(time.Hour)}); len(later) != 0 {
		t.Fatalf("items created after an hour from now: %v", later)
	}

	id := items[0].ID
	fail := errors.New("still down")
	_, err = s.Retry(ctx, id, func(context.Context, Item, *decoder.Event) error { return fail })
	var re *RetryError
	if !errors.As(err, &re) || !errors.Is(err, fail) {
		t.Fatalf("unexpected retry error; got %v; want a RetryError wrapping %v", err, fail)
	}
	it, _ := s.Get(ctx, id)
	if it.Status != StatusPending || it.Retries != 1 || it.LastRetryError == nil || *it.LastRetryError != "still down" {
		t.Fatalf("unexpected item after a failed retry: %+v", it)
	}
	var got *decoder.Event
	it, err = s.Retry(ctx, id, func(_ context.Context, _ Item, ev *decoder.Event) error { got = ev; return nil })
	if err != nil || it.Status != StatusDelivered || it.Retries != 2 || it.LastRetryError != nil {
		t.Fatalf("unexpected retry result %+v, %v", it, err)
	}
	if got == nil || got.ID.String() != it.EventID {
		t.Fatalf("retry delivered the wrong event: %v; want id %s", got, it.EventID)
	}
	if _, err := s.Retry(ctx, id, func(context.Context, Item, *decoder.Event) error { return nil }); !errors.Is(err, ErrNotPending) {
		t.Fatalf("retrying a delivered item; got %v; want ErrNotPending", err)
	}
	if g := gauge(); g != 4 {
		t.Fatalf("unexpected observer_dlq_items_total after a retry; got %v; want 4", g)
	}
	if _, err := s.Remove(ctx, items[1].ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Remove(ctx, items[1].ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("removing twice; got %v; want ErrNotFound", err)
	}
	if n, _ := s.Count(ctx); n != 3 || gauge() != 3 {
		t.Fatalf("unexpected pending count after remove; got %d (gauge %v); want 3", n, gauge())
	}
}

// TestErrorClassIsTheSinksClass: error_class records the failure class the sink
// gives (docs/actions/*.md), e.g. ssrf_blocked for a target the egress guard
// refused, and falls back to permanent or transient for errors without one.
func TestErrorClassIsTheSinksClass(t *testing.T) {
	s, db, _ := newStore(t, 0)
	ctx := context.Background()
	g, err := egress.New(egress.Options{})
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse("http://127.0.0.1:9/hook")
	_, reqErr := g.Client(egress.ClientOptions{}).Post(u.String(), "application/json", strings.NewReader("{}"))
	refused := egress.TransportError(ctx, "POST", u, reqErr)
	cases := []struct {
		err  error
		want string
	}{
		{refused, "ssrf_blocked"},
		{sinks.Permanent("http_400", errors.New("HTTP 400")), "http_400"},
		{sinks.Transient("timeout", errors.New("deadline"), 0), "timeout"},
		{errors.New("disk full"), "transient"},
		{context.Canceled, "permanent"},
	}
	evs := sinktest.Events(len(cases), len(cases))
	for i, c := range cases {
		if err := s.Put(ctx, Letter{Event: evs[i], Observer: "o", Action: "o.a", ActionType: "webhook", Err: c.err, ErrorClass: pipeline.ErrorClass(c.err), Attempts: 1}); err != nil {
			t.Fatal(err)
		}
		got := pgtest.QueryValue[string](db, `SELECT error_class FROM observer_dlq WHERE event_id = $1`, evs[i].ID.String())
		if got != c.want {
			t.Fatalf("unexpected error_class for %v; got %q; want %q", c.err, got, c.want)
		}
	}
}

func TestItemsOf(t *testing.T) {
	s, _, _ := newStore(t, 0)
	ctx := context.Background()
	evs := sinktest.Events(2, 1)
	for _, action := range []string{"o.a", "o.b"} {
		dl := Letter{Event: evs[0], Observer: "o", Action: action, ActionType: "webhook",
			Err: sinks.Permanent("http_400", errors.New("HTTP 400 Bad Request")), ErrorClass: "http_400", Attempts: 1, FirstTry: time.Now(), LastTry: time.Now()}
		if err := s.Put(ctx, dl); err != nil {
			t.Fatal(err)
		}
	}
	ids, err := s.ItemsOf(ctx, evs[0].ID.String())
	if err != nil || len(ids) != 2 || ids[0] >= ids[1] {
		t.Fatalf("items of the event held twice: %v, %v; want two ids, oldest first", ids, err)
	}
	if ids, err := s.ItemsOf(ctx, evs[1].ID.String()); err != nil || len(ids) != 0 {
		t.Fatalf("items of an event not in the DLQ: %v, %v; want none", ids, err)
	}
}
