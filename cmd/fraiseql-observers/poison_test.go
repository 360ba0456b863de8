package main

import (
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fraiseql/fraiseql-observers/dlq"
	"github.com/fraiseql/fraiseql-observers/internal/pgtest"
	"github.com/fraiseql/fraiseql-observers/lsn"
	"github.com/fraiseql/fraiseql-observers/pipeline"
)

const poisonToken = "t0ken-for-poison-tests"

// poisonSetup is a table t with a nullable int, a text column holding a "secret" and
// a large text column, and a service with the given observers.
func poisonSetup(t *testing.T, extra, observers string) (db *pgtest.DB, addr string, env []string, cfg string) {
	t.Helper()
	db = pgtest.NewDB(t)
	db.Exec(`CREATE TABLE t (id int PRIMARY KEY, other int, ssn text, big text);
	         CREATE PUBLICATION obs_pub FOR TABLE t`)
	addr = freeAddr(t)
	env = []string{"OBS_ADMIN_TOKEN=" + poisonToken}
	cfg = writeConfig(t, opsConfig(db, addr, "OBS_ADMIN_TOKEN", extra, observers))
	return db, addr, env, cfg
}

// TestConditionFailureIsNotDropped: `other > 5` on a row whose other is NULL, and
// `int(ssn) > 5` on a row whose ssn is not a number, fail for that event and
// observer: the event goes to the DLQ with the full error (error_class
// condition_error), and neither the log, /debug/events nor debug-event quote the
// row's value. Rows whose condition holds are delivered; the checkpoint covers all.
func TestConditionFailureIsNotDropped(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "out.jsonl")
	db, addr, env, cfg := poisonSetup(t, "", fmt.Sprintf(`
  gt:
    table: public.t
    event_type: INSERT
    condition: 'other > 5'
    actions: [{type: file, name: out, path: %q}]
  parse:
    table: public.t
    event_type: INSERT
    condition: 'int(ssn) > 5'
    actions: [{type: file, name: out, path: %q}]
`, out, filepath.Join(dir, "parse.jsonl")))
	p := startService(t, env, "start", "--config", cfg)
	waitFor(t, 60*time.Second, "the service to be ready", func() bool { return httpStatus(addr, "/readyz") == http.StatusOK })
	db.Exec(`INSERT INTO t VALUES (1, NULL, 'SSN-123-45-6789', ''), (2, 10, '42', ''), (3, NULL, 'SSN-987-65-4321', '')`)
	after, _ := lsn.Parse(pgtest.QueryValue[string](db, `SELECT pg_current_wal_lsn()::text`))

	var items []dlq.Item
	waitFor(t, 60*time.Second, "the failed conditions in the DLQ", func() bool {
		items = nil
		cliJSON(t, env, &items, "dlq", "list", "--config", cfg)
		return len(items) >= 4
	})
	// gt fails for rows 1 and 3 (NULL), parse for rows 1 and 3 (not a number).
	if len(items) != 4 {
		t.Fatalf("unexpected DLQ items %+v", items)
	}
	byObserver := map[string]int{}
	for _, it := range items {
		byObserver[it.Observer]++
		if it.ErrorClass != "condition_error" || !strings.Contains(it.Error, "could not be evaluated") {
			t.Fatalf("unexpected DLQ item %+v", it)
		}
	}
	if byObserver["gt"] != 2 || byObserver["parse"] != 2 {
		t.Fatalf("unexpected DLQ items per observer %v", byObserver)
	}
	// The DLQ row keeps the whole error (it holds the event anyway).
	var full dlq.Item
	for _, it := range items {
		if it.Observer == "parse" {
			cliJSON(t, env, &full, "dlq", "show", fmt.Sprint(it.ID), "--config", cfg)
		}
	}
	if !strings.Contains(full.Error, "SSN-") {
		t.Fatalf("the DLQ item lost the evaluation error: %q", full.Error)
	}
	waitFor(t, 30*time.Second, "row 2 delivered", func() bool { return len(readEvents(t, out)) == 1 })
	// Every event is settled (delivered or in the DLQ): the slot moves past them.
	waitFor(t, 30*time.Second, "the slot to confirm the transaction", func() bool { return confirmedFlush(t, db, "obs_slot") >= after })

	var evs []pipeline.DebugEvent
	cliJSON(t, env, &evs, "debug-event", "--history", "10", "--config", cfg)
	r := expectCLI(t, env, 0, []string{"condition error"}, "debug-event", "--history", "10", "--config", cfg)
	p.stop()
	for what, s := range map[string]string{"service log": p.output(), "debug-event": r.stdout, "debug-event --json": fmt.Sprint(evs)} {
		if strings.Contains(s, "SSN-") {
			t.Errorf("the %s quotes a row value:\n%s", what, s)
		}
	}
	if !strings.Contains(p.output(), "condition could not be evaluated") {
		t.Errorf("the service log does not report the failed conditions:\n%s", p.output())
	}
}

// TestEvaluationBudgets: a condition that would allocate a terabyte, a template that
// would render 300 MB and a condition that would run for ever each fail their event
// (DLQ, with the budget named) while the service goes on delivering later rows.
func TestEvaluationBudgets(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "out.jsonl")
	db, addr, env, cfg := poisonSetup(t, "evaluation: {max_rendered_bytes: 10MiB}\n", fmt.Sprintf(`
  mem:
    table: public.t
    event_type: INSERT
    condition: 'id != 1 || len(repeat(big, 1000000)) > 0'
    actions: [{type: file, name: out, path: %q}]
  steps:
    table: public.t
    event_type: INSERT
    condition: 'id != 2 || (let a = 1..999; all(a, {all(a, {all(a, {all(a, {other == nil})})})}))'
    actions: [{type: file, name: out, path: %q}]
  render:
    table: public.t
    event_type: INSERT
    condition: 'id == 3'
    actions: [{type: log, message_template: '{{ map(1..300, big) }}'}]
`, out, filepath.Join(dir, "steps.jsonl")))
	p := startService(t, env, "start", "--config", cfg)
	waitFor(t, 60*time.Second, "the service to be ready", func() bool { return httpStatus(addr, "/readyz") == http.StatusOK })
	db.Exec(`INSERT INTO t SELECT g, NULL, '', repeat('x', 1000000) FROM generate_series(1, 3) g`)
	db.Exec(`INSERT INTO t VALUES (4, 1, '', '')`)

	var items []dlq.Item
	waitFor(t, 60*time.Second, "three DLQ items", func() bool {
		items = nil
		cliJSON(t, env, &items, "dlq", "list", "--config", cfg)
		return len(items) >= 3
	})
	want := map[string]string{"mem": "evaluation.max_memory_bytes", "steps": "evaluation.", "render": "evaluation.max_rendered_bytes"}
	for _, it := range items {
		if w, ok := want[it.Observer]; !ok || !strings.Contains(it.Error, "evaluation budget exceeded") || !strings.Contains(it.Error, w) {
			t.Fatalf("unexpected DLQ item %+v", it)
		}
		delete(want, it.Observer)
	}
	if len(want) != 0 {
		t.Fatalf("no DLQ item for %v: %+v", want, items)
	}
	// mem delivers rows 2..4, later rows were not held back.
	waitFor(t, 30*time.Second, "the later rows delivered", func() bool { return len(readEvents(t, out)) == 3 })
	if p.exited() {
		t.Fatalf("the service died:\n%s", p.output())
	}
	if code := p.stop(); code != 0 {
		t.Fatalf("unexpected exit code %d", code)
	}
}

// TestSignalEndsAStuckService: with a generous evaluation budget a condition runs
// for up to a minute. The router gives it its own small budget, then leaves it to
// the action's worker: the other rows, of this observer and of another, are routed
// and delivered meanwhile and /readyz stays ready; SIGTERM ends the process within
// pipeline.shutdown_timeout plus the pipeline's stop grace.
func TestSignalEndsAStuckService(t *testing.T) {
	dir := t.TempDir()
	fast := filepath.Join(dir, "fast.jsonl")
	db, addr, env, cfg := poisonSetup(t, "pipeline: {shutdown_timeout: 2s}\nevaluation: {timeout: 1m, max_steps: 1000000000000000}\n", fmt.Sprintf(`
  stuck:
    table: public.t
    event_type: INSERT
    condition: 'let a = 1..999; id != 1 || all(a, {all(a, {all(a, {all(a, {other == nil})})})})'
    actions: [{type: file, name: out, path: %q}]
  fast:
    table: public.t
    event_type: INSERT
    actions: [{type: file, name: out, path: %q}]
`, filepath.Join(dir, "out.jsonl"), fast))
	p := startService(t, env, "start", "--config", cfg)
	waitFor(t, 60*time.Second, "the service to be ready", func() bool { return httpStatus(addr, "/readyz") == http.StatusOK })
	db.Exec(`INSERT INTO t VALUES (1, NULL, '', '')`)
	db.Exec(`INSERT INTO t VALUES (2, NULL, '', ''), (3, NULL, '', '')`)
	// Row 1's condition runs on: rows 2 and 3 reach both observers' files, row 1
	// reaches the observer without the condition.
	waitFor(t, 30*time.Second, "the other rows delivered while row 1's condition runs", func() bool {
		return len(readEvents(t, fast)) == 3 && len(readEvents(t, filepath.Join(dir, "out.jsonl"))) == 2
	})
	if code := httpStatus(addr, "/readyz"); code != http.StatusOK {
		t.Fatalf("unexpected /readyz while a condition runs on an action's worker; got %d; want 200", code)
	}
	var ev struct {
		Observers []struct {
			Name             string `json:"name"`
			ConditionPending bool   `json:"condition_pending"`
		} `json:"observers"`
	}
	var row1 string
	for _, e := range readEvents(t, fast) {
		if string(e.Key["id"]) == "1" {
			row1 = e.ID
		}
	}
	cliJSON(t, env, &ev, "debug-event", "--config", cfg, "--event-id", row1)
	if len(ev.Observers) != 2 || ev.Observers[0].Name != "stuck" || !ev.Observers[0].ConditionPending {
		t.Fatalf("unexpected debug-event of row 1: %+v", ev)
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	// The evaluation alone would go on for a minute: the process must not wait for it.
	select {
	case <-p.done:
	case <-time.After(40 * time.Second):
		t.Fatalf("the service did not exit after SIGTERM while a condition was stuck:\n%s", p.output())
	}
	if !strings.Contains(p.output(), "the pipeline did not stop") {
		t.Fatalf("the service did not say why it stopped without the pipeline:\n%s", p.output())
	}
}

// TestGeneratedColumnIsReported: PostgreSQL 15 does not replicate generated columns,
// so a condition reading one fails for every event: validate-config --detailed and the
// start-up check say so, and the events go to the DLQ instead of being dropped.
func TestGeneratedColumnIsReported(t *testing.T) {
	db := pgtest.NewDB(t)
	db.Exec(`CREATE TABLE g (id int PRIMARY KEY, gen int GENERATED ALWAYS AS (id * 2) STORED);
	         CREATE PUBLICATION obs_pub FOR TABLE g`)
	addr := freeAddr(t)
	env := []string{"OBS_ADMIN_TOKEN=" + poisonToken}
	cfg := writeConfig(t, opsConfig(db, addr, "OBS_ADMIN_TOKEN", "", fmt.Sprintf(`
  doubled:
    table: public.g
    event_type: INSERT
    condition: 'gen > 0'
    actions: [{type: file, name: out, path: %q}]
`, filepath.Join(t.TempDir(), "out.jsonl"))))
	problem := `observer doubled's condition reads column "gen", a generated column of public.g: generated columns are not replicated by this PostgreSQL version`
	expectCLI(t, env, exitPrefight, []string{problem}, "validate-config", cfg, "--detailed")
	p := startService(t, env, "start", "--config", cfg)
	waitFor(t, 60*time.Second, "the service to be ready", func() bool { return httpStatus(addr, "/readyz") == http.StatusOK })
	if out := strings.ReplaceAll(p.output(), `\"`, `"`); !strings.Contains(out, problem) {
		t.Fatalf("the start-up check does not report the generated column:\n%s", out)
	}
	db.Exec(`INSERT INTO g (id) VALUES (1), (2)`)
	var items []dlq.Item
	waitFor(t, 60*time.Second, "the events in the DLQ", func() bool {
		items = nil
		cliJSON(t, env, &items, "dlq", "list", "--config", cfg)
		return len(items) == 2
	})
	for _, it := range items {
		if it.ErrorClass != "condition_error" || !strings.Contains(it.Error, "gen") {
			t.Fatalf("unexpected DLQ item %+v", it)
		}
	}
}

// TestGeneratedColumnInTemplateIsReported: a template reading a generated column fails
// to render for every event just as a condition does (PostgreSQL 15 does not
// replicate the column): validate-config --detailed and the start-up check name the
// observer, the action, the template's key and the column, and the events go to the
// DLQ. An action whose templates read only replicated columns is not reported.
func TestGeneratedColumnInTemplateIsReported(t *testing.T) {
	db := pgtest.NewDB(t)
	db.Exec(`CREATE TABLE g (id int PRIMARY KEY, gen int GENERATED ALWAYS AS (id * 2) STORED);
	         CREATE PUBLICATION obs_pub FOR TABLE g`)
	addr := freeAddr(t)
	env := []string{"OBS_ADMIN_TOKEN=" + poisonToken}
	cfg := writeConfig(t, opsConfig(db, addr, "OBS_ADMIN_TOKEN", "", `
  doubled:
    table: public.g
    event_type: INSERT
    actions:
      - {type: log, name: say, message_template: 'row {{ new.id }} doubles to {{ new.gen }}'}
      - {type: log, name: plain, message_template: 'row {{ new.id }}'}
`))
	problem := `observer doubled's action doubled.say reads column "gen" in message_template, a generated column of public.g: generated columns are not replicated by this PostgreSQL version`
	r := expectCLI(t, env, exitPrefight, []string{problem}, "validate-config", cfg, "--detailed")
	if strings.Contains(r.stdout+r.stderr, "doubled.plain reads") {
		t.Fatalf("validate-config reports an action whose template reads no generated column:\n%s", r.stdout+r.stderr)
	}
	p := startService(t, env, "start", "--config", cfg)
	waitFor(t, 60*time.Second, "the service to be ready", func() bool { return httpStatus(addr, "/readyz") == http.StatusOK })
	if out := strings.ReplaceAll(p.output(), `\"`, `"`); !strings.Contains(out, problem) {
		t.Fatalf("the start-up check does not report the generated column read by the template:\n%s", out)
	}
	db.Exec(`INSERT INTO g (id) VALUES (1), (2)`)
	var items []dlq.Item
	waitFor(t, 60*time.Second, "the events in the DLQ", func() bool {
		items = nil
		cliJSON(t, env, &items, "dlq", "list", "--config", cfg)
		return len(items) == 2
	})
	for _, it := range items {
		if it.Action != "doubled.say" || it.ErrorClass != "template" || !strings.Contains(it.Error, "gen") {
			t.Fatalf("unexpected DLQ item %+v", it)
		}
	}
}

// TestTooLargeAfterTOASTFill: under REPLICA IDENTITY FULL an UPDATE of a small column
// carries a large unchanged value twice (old image, and the new one filled from it):
// source.max_event_bytes applies to that event as delivered. The DLQ item records the
// size, the limit and the key, and `dlq show` and `dlq retry` give the exact commands
// that deliver the change.
func TestTooLargeAfterTOASTFill(t *testing.T) {
	db := pgtest.NewDB(t)
	db.Exec(`CREATE TABLE t (id int PRIMARY KEY, v int NOT NULL, doc text);
	         ALTER TABLE t ALTER COLUMN doc SET STORAGE EXTERNAL; ALTER TABLE t REPLICA IDENTITY FULL;
	         CREATE PUBLICATION obs_pub FOR TABLE t`)
	out := filepath.Join(t.TempDir(), "events.jsonl")
	cfg := writeConfig(t, strings.Replace(baseConfig(db, out, ""), "  status_interval: 1s", "  status_interval: 1s\n  max_event_bytes: 64KiB", 1))
	p := startService(t, nil, "start", "--config", cfg)
	waitFor(t, 30*time.Second, "the service to stream", func() bool { return slotActive(db, "obs_slot") })
	db.Exec(`INSERT INTO t VALUES (7, 1, repeat('x', 40000))`) // 40 kB: under the limit
	db.Exec(`UPDATE t SET v = 2 WHERE id = 7`)                 // 80 kB as delivered
	db.Exec(`INSERT INTO t VALUES (8, 1, 'small')`)
	waitFor(t, 30*time.Second, "the insert events", func() bool { return len(readEvents(t, out)) == 2 })
	for _, ev := range readEvents(t, out) {
		if ev.Op != "INSERT" {
			t.Fatalf("an event over max_event_bytes was delivered (%d bytes)", len(ev.raw))
		}
	}
	p.stop()
	id := pgtest.QueryValue[int64](db, `SELECT id FROM observer_dlq WHERE error_class = 'too_large'`)
	commit := pgtest.QueryValue[string](db, `SELECT commit_lsn::text FROM observer_dlq WHERE id = $1`, id)
	event := pgtest.QueryValue[string](db, `SELECT jsonb_pretty(event::jsonb) FROM observer_dlq WHERE id = $1`, id)
	event = strings.Join(strings.Fields(event), " ")
	for _, want := range []string{`"key": { "id": 7 }`, `"limit": 65536`, `"size": 8`} {
		if !strings.Contains(event, want) {
			t.Fatalf("the too_large item lacks %s: %s", want, event)
		}
	}
	replay := fmt.Sprintf("fraiseql-observers replay --from-lsn %s --to-lsn %s", commit, commit)
	snapshot := `fraiseql-observers snapshot --table public.t --where '"id" = 7' --observer NAME`
	expectCLI(t, nil, 0, []string{"Raise source.max_event_bytes above 8", "(the event's size; the limit was 65536)", replay, snapshot,
		fmt.Sprintf("dlq remove %d", id)}, "dlq", "show", fmt.Sprint(id), "--config", cfg)
	r := cli(t, nil, "dlq", "retry", fmt.Sprint(id), "--config", cfg)
	if r.code == 0 || !strings.Contains(r.stdout+r.stderr, replay) || !strings.Contains(r.stdout+r.stderr, snapshot) {
		t.Fatalf("dlq retry of a too_large item: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}

// TestRowCacheFillRespectsMaxEventBytes: the row cache fills an UPDATE's unchanged
// TOAST value and its old image from the INSERT it saw; when that would make the
// event larger than source.max_event_bytes, the event is delivered as PostgreSQL sent
// it (the value unavailable), never over the limit.
func TestRowCacheFillRespectsMaxEventBytes(t *testing.T) {
	db := pgtest.NewDB(t)
	db.Exec(`CREATE TABLE t (id int PRIMARY KEY, v int NOT NULL, doc text);
	         ALTER TABLE t ALTER COLUMN doc SET STORAGE EXTERNAL;
	         CREATE PUBLICATION obs_pub FOR TABLE t`)
	out := filepath.Join(t.TempDir(), "events.jsonl")
	cfg := writeConfig(t, strings.Replace(baseConfig(db, out, ""), "  status_interval: 1s", "  status_interval: 1s\n  max_event_bytes: 64KiB", 1))
	p := startService(t, nil, "start", "--config", cfg)
	waitFor(t, 30*time.Second, "the service to stream", func() bool { return slotActive(db, "obs_slot") })
	db.Exec(`INSERT INTO t VALUES (7, 1, repeat('x', 40000))`) // cached: 40 kB
	db.Exec(`UPDATE t SET v = 2 WHERE id = 7`)                 // filled: 80 kB
	db.Exec(`INSERT INTO t VALUES (8, 1, 'small'); UPDATE t SET v = 2 WHERE id = 8`)
	waitFor(t, 30*time.Second, "four events", func() bool { return len(readEvents(t, out)) == 4 })
	p.stop()
	evs := readEvents(t, out)
	for _, ev := range evs {
		if len(ev.raw) > 64<<10 {
			t.Fatalf("an event of %d bytes was delivered under max_event_bytes 64KiB: %.300s", len(ev.raw), ev.raw)
		}
	}
	if up := evs[1]; up.Op != "UPDATE" || up.OldKind == "cached" || !strings.Contains(up.raw, `"unavailable":["doc"]`) {
		t.Fatalf("unexpected UPDATE of row 7: %.300s", up.raw)
	}
	if up := evs[3]; up.Op != "UPDATE" || up.OldKind != "cached" {
		t.Fatalf("the cache no longer fills small events: %.300s", up.raw)
	}
}
