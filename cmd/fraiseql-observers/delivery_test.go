package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fraiseql/fraiseql-observers/internal/pgtest"
	"github.com/fraiseql/fraiseql-observers/lsn"
)

// receiver is a webhook endpoint on loopback that records every request and answers
// as scripted per row id.
type receiver struct {
	srv *httptest.Server
	mu  sync.Mutex
	// byKey holds the delivered (2xx) values of column v per row id, in arrival order.
	byKey    map[int][]int
	ids      map[string]int          // event id → deliveries answered 2xx
	attempts map[int][]time.Time     // row id → every request's arrival
	idemKeys map[int]map[string]bool // row id → Idempotency-Key values seen
	answer   func(id, attempt int) (status int, retryAfter string)
	delay    func() time.Duration

	inFlight, maxInFlight int
	busy                  time.Duration // sum of handler times
	first, last           time.Time
}

func newReceiver(t *testing.T) *receiver {
	r := &receiver{byKey: map[int][]int{}, ids: map[string]int{}, attempts: map[int][]time.Time{}, idemKeys: map[int]map[string]bool{}}
	r.srv = httptest.NewServer(http.HandlerFunc(r.handle))
	t.Cleanup(r.srv.Close)
	return r
}

type hookEvent struct {
	ID  string                     `json:"id"`
	New map[string]json.RawMessage `json:"new"`
	Old map[string]json.RawMessage `json:"old"`
	Key map[string]json.RawMessage `json:"key"`
}

func (r *receiver) handle(w http.ResponseWriter, req *http.Request) {
	start := time.Now()
	body, _ := io.ReadAll(req.Body)
	var ev hookEvent
	if err := json.Unmarshal(body, &ev); err != nil {
		http.Error(w, "not an event", http.StatusBadRequest)
		return
	}
	id, _ := strconv.Atoi(string(ev.Key["id"]))
	r.mu.Lock()
	r.inFlight++
	r.maxInFlight = max(r.maxInFlight, r.inFlight)
	if r.first.IsZero() {
		r.first = start
	}
	r.attempts[id] = append(r.attempts[id], start)
	if r.idemKeys[id] == nil {
		r.idemKeys[id] = map[string]bool{}
	}
	r.idemKeys[id][req.Header.Get("Idempotency-Key")] = true
	attempt := len(r.attempts[id])
	answer, delay := r.answer, r.delay
	r.mu.Unlock()
	if delay != nil {
		time.Sleep(delay())
	}
	status, retryAfter := http.StatusOK, ""
	if answer != nil {
		status, retryAfter = answer(id, attempt)
	}
	r.mu.Lock()
	if status/100 == 2 {
		v, _ := strconv.Atoi(string(ev.New["v"]))
		r.byKey[id] = append(r.byKey[id], v)
		r.ids[ev.ID]++
	}
	r.inFlight--
	r.busy += time.Since(start)
	r.last = time.Now()
	r.mu.Unlock()
	if retryAfter != "" {
		w.Header().Set("Retry-After", retryAfter)
	}
	w.WriteHeader(status)
}

func (r *receiver) delivered() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, c := range r.ids {
		n += c
	}
	return n
}

// hookConfig is a configuration with one webhook observer on table t.
func hookConfig(db *pgtest.DB, url, events, extra string) string {
	return fmt.Sprintf(`
source: {dsn: %q, slot: obs_slot, publication: obs_pub, manage_slot: true, status_interval: 1s,
         reconnect: {initial_delay: 100ms, max_delay: 1s}}
checkpoints: {interval: 200ms}
admin: {listen: ""}
%s
observers:
  hook:
    entity: t
    event_type: %s
    retry: {max_attempts: 5, backoff_strategy: fixed, initial_delay: 100ms}
    on_failure: dlq
    actions:
      - type: webhook
        name: recv
        url: %q
        allow_private_networks: true
`, db.DSN(), extra, events, url)
}

// TestWebhookPerKeyOrderWithConcurrency sends 10k updates over 100 rows to a receiver
// answering with random delays: each row's updates arrive in commit order, exactly
// once, while deliveries of different rows overlap.
func TestWebhookPerKeyOrderWithConcurrency(t *testing.T) {
	db := pgtest.NewDB(t)
	db.Exec(`CREATE TABLE t (id int PRIMARY KEY, v int NOT NULL);
	         INSERT INTO t SELECT g, 0 FROM generate_series(1, 100) g;
	         CREATE PUBLICATION obs_pub FOR TABLE t`)
	rec := newReceiver(t)
	rec.delay = func() time.Duration { return time.Duration(rand.IntN(2000)) * time.Microsecond }
	cfg := writeConfig(t, hookConfig(db, rec.srv.URL, "UPDATE", "concurrent_execution: {max_concurrency: 8}"))
	p := startService(t, nil, "start", "--config", cfg)
	waitFor(t, 30*time.Second, "the service to stream", func() bool { return slotActive(db, "obs_slot") })
	ctx := context.Background()
	conn := db.Conn()
	r := rand.New(rand.NewPCG(11, 12))
	want := map[int]int{}
	for tx := 0; tx < 100; tx++ {
		batch, err := conn.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 100; i++ {
			k := 1 + r.IntN(100)
			want[k]++
			execTx(t, batch, `UPDATE t SET v = v + 1 WHERE id = $1`, k)
		}
		if err := batch.Commit(ctx); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 3*time.Minute, "10000 deliveries", func() bool { return rec.delivered() >= 10000 })
	p.stop()
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.ids) != 10000 {
		t.Fatalf("unexpected distinct events delivered; got %d; want 10000", len(rec.ids))
	}
	for k, n := range want {
		seq := rec.byKey[k]
		if len(seq) != n {
			t.Fatalf("row %d: unexpected deliveries; got %d; want %d", k, len(seq), n)
		}
		for i, v := range seq {
			if v != i+1 {
				t.Fatalf("row %d: delivery %d carries v=%d; want %d: not in commit order", k, i, v, i+1)
			}
		}
	}
	// Overlap, measured by the receiver: how many requests were in flight at once, and
	// the average concurrency (time spent in handlers over the span of the run).
	avg := rec.busy.Seconds() / rec.last.Sub(rec.first).Seconds()
	t.Logf("max in flight %d, average concurrency %.2f", rec.maxInFlight, avg)
	if rec.maxInFlight < 4 || avg < 1.5 {
		t.Fatalf("deliveries of different rows did not overlap: max in flight %d, average concurrency %.2f", rec.maxInFlight, avg)
	}
}

// TestWebhookRetriesAndDeadLetters: a receiver failing the first attempts is retried,
// 429 with Retry-After is honoured, 400 goes to the DLQ after one attempt; the DLQ rows
// survive a restart of the service, and the parked event is not retried by it.
func TestWebhookRetriesAndDeadLetters(t *testing.T) {
	db := pgtest.NewDB(t)
	db.Exec(`CREATE TABLE t (id int PRIMARY KEY, v int NOT NULL); CREATE PUBLICATION obs_pub FOR TABLE t`)
	rec := newReceiver(t)
	rec.answer = func(id, attempt int) (int, string) {
		switch {
		case id == 1 && attempt <= 2:
			return http.StatusInternalServerError, ""
		case id == 2 && attempt == 1:
			return http.StatusTooManyRequests, "2"
		case id == 3:
			return http.StatusBadRequest, ""
		}
		return http.StatusOK, ""
	}
	cfg := writeConfig(t, hookConfig(db, rec.srv.URL, "INSERT", ""))
	p := startService(t, nil, "start", "--config", cfg)
	waitFor(t, 30*time.Second, "the service to stream", func() bool { return slotActive(db, "obs_slot") })
	db.Exec(`INSERT INTO t VALUES (1, 1), (2, 1), (3, 1), (4, 1)`)
	waitFor(t, 30*time.Second, "deliveries and the dead letter", func() bool {
		return rec.delivered() == 3 && pgtest.QueryValue[int64](db, `SELECT count(*) FROM observer_dlq`) == 1
	})
	p.stop()
	rec.mu.Lock()
	if n := len(rec.attempts[1]); n != 3 {
		t.Fatalf("row 1: unexpected attempts %d; want 3 (two 500s, then 200)", n)
	}
	if len(rec.idemKeys[1]) != 1 {
		t.Fatalf("row 1: Idempotency-Key changed between attempts: %v", rec.idemKeys[1])
	}
	if a := rec.attempts[2]; len(a) != 2 || a[1].Sub(a[0]) < 2*time.Second {
		t.Fatalf("row 2: Retry-After: 2 not honoured: attempts at %v", a)
	}
	if n := len(rec.attempts[3]); n != 1 {
		t.Fatalf("row 3: a 400 was retried: %d attempts", n)
	}
	rec.mu.Unlock()
	row := pgtest.QueryValue[string](db, `SELECT concat_ws('|', action, attempts, error_class, status) FROM observer_dlq`)
	if row != "hook.recv|1|http_400|pending" {
		t.Fatalf("unexpected dead letter %q", row)
	}
	// A restart: the dead letter is still there and the parked event is not sent again.
	p = startService(t, nil, "start", "--config", cfg)
	waitFor(t, 30*time.Second, "the service to stream", func() bool { return slotActive(db, "obs_slot") })
	db.Exec(`INSERT INTO t VALUES (5, 1)`)
	waitFor(t, 30*time.Second, "the next delivery", func() bool { return rec.delivered() == 4 })
	p.stop()
	if n := pgtest.QueryValue[int64](db, `SELECT count(*) FROM observer_dlq WHERE status = 'pending'`); n != 1 {
		t.Fatalf("dead letters after a restart: %d; want 1", n)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if n := len(rec.attempts[3]); n != 1 {
		t.Fatalf("the parked event was delivered again after a restart: %d attempts", n)
	}
}

// TestKillWhileRetrying: the service is killed while an event keeps failing; the slot
// never confirmed past it, and after a restart with the receiver healthy every event
// is delivered.
func TestKillWhileRetrying(t *testing.T) {
	db := pgtest.NewDB(t)
	db.Exec(`CREATE TABLE t (id int PRIMARY KEY, v int NOT NULL); CREATE PUBLICATION obs_pub FOR TABLE t`)
	rec := newReceiver(t)
	var healthy sync.Map
	rec.answer = func(id, attempt int) (int, string) {
		if _, ok := healthy.Load("yes"); !ok && id == 5 {
			return http.StatusServiceUnavailable, ""
		}
		return http.StatusOK, ""
	}
	cfg := writeConfig(t, fmt.Sprintf(`
source: {dsn: %q, slot: obs_slot, publication: obs_pub, manage_slot: true, status_interval: 1s}
checkpoints: {interval: 200ms}
admin: {listen: ""}
observers:
  hook:
    entity: t
    event_type: INSERT
    retry: {max_attempts: 100000, backoff_strategy: fixed, initial_delay: 100ms}
    actions: [{type: webhook, url: %q, allow_private_networks: true}]
`, db.DSN(), rec.srv.URL))
	p := startService(t, nil, "start", "--config", cfg)
	waitFor(t, 30*time.Second, "the service to stream", func() bool { return slotActive(db, "obs_slot") })
	var before5 lsn.LSN
	for id := 1; id <= 10; id++ {
		if id == 5 {
			before5, _ = lsn.Parse(pgtest.QueryValue[string](db, `SELECT pg_current_wal_lsn()::text`))
		}
		db.Exec(`INSERT INTO t VALUES ($1, 1)`, id)
	}
	waitFor(t, 30*time.Second, "the other rows", func() bool { return rec.delivered() == 9 })
	time.Sleep(2 * time.Second) // status updates and checkpoints go on while row 5 fails
	if c := confirmedFlush(t, db, "obs_slot"); c > before5 {
		t.Fatalf("confirmed_flush_lsn %s passed the transaction of the failing event (it began after %s)", c, before5)
	}
	p.kill()
	healthy.Store("yes", true)
	p = startService(t, nil, "start", "--config", cfg)
	waitFor(t, 30*time.Second, "row 5 after the restart", func() bool {
		rec.mu.Lock()
		defer rec.mu.Unlock()
		return len(rec.byKey[5]) >= 1
	})
	p.stop()
	rec.mu.Lock()
	defer rec.mu.Unlock()
	for id := 1; id <= 10; id++ {
		if len(rec.byKey[id]) == 0 {
			t.Fatalf("row %d was never delivered", id)
		}
	}
}

// TestDedupOnForcedReconnect: the walsender is terminated while the checkpoint lags,
// so the reconnected stream sends the open window again; the receiver sees each event
// once and the dedup counters show what was dropped. With deduplication off, the
// replay is delivered again (the documented trade-off).
func TestDedupOnForcedReconnect(t *testing.T) {
	for _, dedup := range []bool{true, false} {
		t.Run(fmt.Sprintf("dedup=%v", dedup), func(t *testing.T) {
			db := pgtest.NewDB(t)
			db.Exec(`CREATE TABLE t (id int PRIMARY KEY, v int NOT NULL); CREATE PUBLICATION obs_pub FOR TABLE t`)
			rec := newReceiver(t)
			// Row 1 fails until released: the action's contiguous progress stays before it,
			// so only the delivered-ids cache can recognise the later rows when replayed.
			var released sync.Map
			rec.answer = func(id, attempt int) (int, string) {
				if _, ok := released.Load(1); !ok && id == 1 {
					return http.StatusServiceUnavailable, ""
				}
				return http.StatusOK, ""
			}
			addr := freeAddr(t)
			// Checkpoints an hour apart: the slot stays at the start, so the reconnected
			// stream sends every event again.
			cfg := writeConfig(t, fmt.Sprintf(`
source: {dsn: %q, slot: obs_slot, publication: obs_pub, manage_slot: true, status_interval: 1s,
         reconnect: {initial_delay: 100ms, max_delay: 1s}}
checkpoints: {interval: 1h}
deduplication: {enabled: %v}
admin: {listen: %q}
observers:
  hook:
    entity: t
    event_type: INSERT
    retry: {max_attempts: 100000, backoff_strategy: fixed, initial_delay: 50ms}
    actions: [{type: webhook, url: %q, allow_private_networks: true}]
`, db.DSN(), dedup, addr, rec.srv.URL))
			p := startAndWait(t, cfg, addr)
			for i := 1; i <= 200; i++ { // one transaction per row
				db.Exec(`INSERT INTO t VALUES ($1, 1)`, i)
			}
			waitFor(t, 30*time.Second, "199 deliveries", func() bool { return rec.delivered() == 199 })
			db.Exec(`SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = 'obs_slot'`)
			waitFor(t, 30*time.Second, "a reconnect", func() bool {
				return metric(t, scrape(t, addr, ""), "observer_replication_reconnects_total") >= 1 && httpStatus(addr, "/readyz") == http.StatusOK
			})
			db.Exec(`INSERT INTO t VALUES (1000, 1)`) // after the replayed window
			waitFor(t, 30*time.Second, "the next event", func() bool {
				rec.mu.Lock()
				defer rec.mu.Unlock()
				return len(rec.byKey[1000]) == 1
			})
			released.Store(1, true)
			waitFor(t, 30*time.Second, "row 1", func() bool {
				rec.mu.Lock()
				defer rec.mu.Unlock()
				return len(rec.byKey[1]) >= 1
			})
			m := scrape(t, addr, "")
			byCheckpoint := metric(t, m, `observer_dedup_dropped_total{layer="checkpoint"}`)
			byCache := metric(t, m, `observer_dedup_dropped_total{layer="cache"}`)
			p.stop()
			rec.mu.Lock()
			defer rec.mu.Unlock()
			dups := 0
			for _, n := range rec.ids {
				dups += n - 1
			}
			t.Logf("duplicates delivered %d; dropped by the progress check %.0f, by the delivered-ids cache %.0f", dups, byCheckpoint, byCache)
			if dedup && (dups != 0 || byCache < 150) {
				t.Fatalf("with deduplication on: %d duplicates delivered, %.0f dropped by the cache; want 0 and most of the 199", dups, byCache)
			}
			if !dedup && dups < 150 {
				t.Fatalf("with deduplication off the replayed window should be delivered again; got %d duplicates", dups)
			}
		})
	}
}

// TestTogglesOff: with checkpoints, the DLQ and concurrent execution off, the service
// writes no checkpoint rows, keeps no dead letters (a failure is logged and the event
// settled), and delivers strictly one event at a time in commit order.
func TestTogglesOff(t *testing.T) {
	db := pgtest.NewDB(t)
	db.Exec(`CREATE TABLE t (id int PRIMARY KEY, v int NOT NULL); CREATE PUBLICATION obs_pub FOR TABLE t`)
	rec := newReceiver(t)
	rec.delay = func() time.Duration { return time.Duration(rand.IntN(1000)) * time.Microsecond }
	rec.answer = func(id, attempt int) (int, string) {
		if id == 7 {
			return http.StatusBadRequest, ""
		}
		return http.StatusOK, ""
	}
	cfg := writeConfig(t, fmt.Sprintf(`
source: {dsn: %q, slot: obs_slot, publication: obs_pub, manage_slot: true, status_interval: 1s}
checkpoints: {enabled: false}
dlq: {enabled: false}
concurrent_execution: {enabled: false}
admin: {listen: ""}
observers:
  hook:
    entity: t
    event_type: INSERT
    on_failure: log
    actions: [{type: webhook, url: %q, allow_private_networks: true}]
`, db.DSN(), rec.srv.URL))
	p := startService(t, nil, "start", "--config", cfg)
	waitFor(t, 30*time.Second, "the service to stream", func() bool { return slotActive(db, "obs_slot") })
	var beforeLast lsn.LSN
	for i := 1; i <= 50; i++ {
		if i == 50 {
			beforeLast, _ = lsn.Parse(pgtest.QueryValue[string](db, `SELECT pg_current_wal_lsn()::text`))
		}
		db.Exec(`INSERT INTO t VALUES ($1, $1)`, i)
	}
	waitFor(t, 30*time.Second, "49 deliveries", func() bool { return rec.delivered() == 49 })
	// The failed event was settled by on_failure: log, so the slot moves past everything.
	waitFor(t, 30*time.Second, "the slot to confirm the last transaction", func() bool {
		return confirmedFlush(t, db, "obs_slot") > beforeLast
	})
	p.stop()
	if n := pgtest.QueryValue[int64](db, `SELECT count(*) FROM pg_tables WHERE tablename IN ('observer_checkpoints', 'observer_dlq')`); n != 0 {
		t.Fatalf("state tables created with checkpoints and the DLQ off: %d", n)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if rec.maxInFlight != 1 {
		t.Fatalf("concurrent execution off, yet %d requests were in flight at once", rec.maxInFlight)
	}
	for id := 1; id <= 50; id++ {
		if id != 7 && len(rec.byKey[id]) != 1 {
			t.Fatalf("row %d delivered %d times", id, len(rec.byKey[id]))
		}
	}
	first := map[int]time.Time{}
	for id, ts := range rec.attempts {
		first[id] = ts[0]
	}
	for id := 2; id <= 50; id++ {
		if first[id].Before(first[id-1]) {
			t.Fatalf("row %d was sent before row %d: not in commit order", id, id-1)
		}
	}
	if !strings.Contains(p.output(), "action failed for good") {
		t.Fatalf("the failure was not logged:\n%s", p.output())
	}
}

// TestOversizedChangeGoesToTheDLQ: a change larger than source.max_event_bytes is
// parked in the DLQ with its position and table (no values), the stream goes on, and
// `dlq retry` explains that it cannot be retried.
func TestOversizedChangeGoesToTheDLQ(t *testing.T) {
	db := pgtest.NewDB(t)
	db.Exec(`CREATE TABLE t (id int PRIMARY KEY, v int NOT NULL, doc text); CREATE PUBLICATION obs_pub FOR TABLE t`)
	out := filepath.Join(t.TempDir(), "events.jsonl")
	cfg := writeConfig(t, strings.Replace(baseConfig(db, out, ""), "  status_interval: 1s", "  status_interval: 1s\n  max_event_bytes: 4KiB", 1))
	p := startService(t, nil, "start", "--config", cfg)
	waitFor(t, 30*time.Second, "the service to stream", func() bool { return slotActive(db, "obs_slot") })
	db.Exec(`INSERT INTO t VALUES (1, 1, 'small')`)
	db.Exec(`INSERT INTO t VALUES (2, 1, repeat('x', 20000))`)
	db.Exec(`INSERT INTO t VALUES (3, 1, 'small')`)
	waitFor(t, 30*time.Second, "the two small rows", func() bool { return len(readEvents(t, out)) == 2 })
	row := pgtest.QueryValue[string](db, `SELECT concat_ws('|', action, action_type, error_class, table_name) FROM observer_dlq`)
	if row != "*|decode|too_large|t" {
		t.Fatalf("unexpected DLQ row %q", row)
	}
	if ev := pgtest.QueryValue[string](db, `SELECT event::text FROM observer_dlq`); strings.Contains(ev, "xxxx") {
		t.Fatalf("the parked change carries its values: %.200s", ev)
	}
	p.stop()
	id := pgtest.QueryValue[int64](db, `SELECT id FROM observer_dlq`)
	r := cli(t, nil, "dlq", "retry", strconv.FormatInt(id, 10), "--config", cfg)
	if r.code == 0 || !strings.Contains(r.stdout+r.stderr, "could not be decoded") {
		t.Fatalf("dlq retry of an undecodable change: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}

// TestShutdownDrainBound: on SIGTERM with a delivery that never finishes, the service
// waits pipeline.shutdown_timeout for in-flight deliveries, then cancels them and exits;
// the stuck event is not confirmed and is delivered after a restart.
func TestShutdownDrainBound(t *testing.T) {
	db := pgtest.NewDB(t)
	db.Exec(`CREATE TABLE t (id int PRIMARY KEY, v int NOT NULL); CREATE PUBLICATION obs_pub FOR TABLE t`)
	rec := newReceiver(t)
	hang := make(chan struct{})
	var hung sync.Map
	rec.delay = func() time.Duration {
		if _, ok := hung.Load("off"); !ok {
			<-hang
		}
		return 0
	}
	defer close(hang)
	cfg := writeConfig(t, hookConfig(db, rec.srv.URL, "INSERT", "pipeline: {shutdown_timeout: 2s}"))
	p := startService(t, nil, "start", "--config", cfg)
	waitFor(t, 30*time.Second, "the service to stream", func() bool { return slotActive(db, "obs_slot") })
	db.Exec(`INSERT INTO t VALUES (1, 1)`)
	var eventID string
	waitFor(t, 30*time.Second, "the delivery to start", func() bool {
		rec.mu.Lock()
		defer rec.mu.Unlock()
		for k := range rec.idemKeys[1] {
			eventID = k
		}
		return len(rec.attempts[1]) == 1
	})
	// The service's own writes (checkpoints, heartbeats) commit around the INSERT and may
	// be confirmed; what must not be is the INSERT's own commit.
	commit := mustPosition(t, eventID).Commit
	start := time.Now()
	p.stop()
	if took := time.Since(start); took > 2*time.Second+20*time.Second {
		t.Fatalf("shutdown took %v with shutdown_timeout 2s", took)
	}
	if !strings.Contains(p.output(), "drain deadline passed") {
		t.Fatalf("no report of the cancelled delivery:\n%s", p.output())
	}
	if c := confirmedFlush(t, db, "obs_slot"); c > commit {
		t.Fatalf("confirmed_flush_lsn %s passed the undelivered event (its transaction commits at %s)", c, commit)
	}
	hung.Store("off", true)
	p = startService(t, nil, "start", "--config", cfg)
	waitFor(t, 30*time.Second, "the event after the restart", func() bool { return rec.delivered() == 1 })
	p.stop()
}
