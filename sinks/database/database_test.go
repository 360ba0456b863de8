package database

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/goleak"

	"github.com/fraiseql/fraiseql-observers/decoder"
	"github.com/fraiseql/fraiseql-observers/internal/pgtest"
	"github.com/fraiseql/fraiseql-observers/internal/sinktest"
	"github.com/fraiseql/fraiseql-observers/pipeline"
	"github.com/fraiseql/fraiseql-observers/sinks"
)

func TestMain(m *testing.M) { pgtest.Main(m, pgtest.Options{}) }

// recorder is a plpgsql function recording its argument, one row per call.
const recorder = `
CREATE TABLE got (n bigserial PRIMARY KEY, arg jsonb NOT NULL);
CREATE FUNCTION record(arg jsonb) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO got (arg) VALUES (arg);
END $$;`

// setup creates a database with sql applied and a pool on it; both go when t ends,
// and no goroutine may outlive the test.
func setup(t *testing.T, sql string) (*pgtest.DB, *pgxpool.Pool) {
	t.Helper()
	t.Cleanup(func() { goleak.VerifyNone(t, goleak.IgnoreCurrent()) })
	db := pgtest.NewDB(t)
	if sql != "" {
		db.Exec(sql)
	}
	return db, pgtest.Pool(t, db.DSN())
}

func newSink(t testing.TB, cfg Config, pool *pgxpool.Pool) *Sink {
	t.Helper()
	s, err := New(sinktest.Context(t), cfg, sinks.Deps{DB: pool})
	if err != nil {
		t.Fatalf("unexpected error from New: %v", err)
	}
	return s
}

func TestEnvelope(t *testing.T) {
	db, pool := setup(t, `CREATE SCHEMA audit;
		CREATE TABLE audit.got (n bigserial PRIMARY KEY, arg jsonb NOT NULL);
		CREATE FUNCTION audit.record(arg jsonb) RETURNS void LANGUAGE plpgsql AS $$
		BEGIN INSERT INTO audit.got (arg) VALUES (arg); END $$;`)
	params := json.RawMessage(`{"channel": "orders", "n": 3, "nested": {"a": [1, true, null, "é"]}}`)
	evs := sinktest.Events(20, 7)
	dlq := sinktest.Run(t, newSink(t, Config{FunctionName: "audit.record", Params: params}, pool), evs, sinktest.RunOptions{})
	if n := len(dlq.Snapshot()); n != 0 {
		t.Fatalf("unexpected dead letters: %v", dlq.Snapshot()[0].Err)
	}
	if n := pgtest.QueryValue[int64](db, `SELECT count(*) FROM audit.got`); n != int64(len(evs)) {
		t.Fatalf("unexpected call count; got %d; want %d", n, len(evs))
	}
	for _, ev := range evs {
		ok := pgtest.QueryValue[bool](db, `SELECT count(*) = 1 FROM audit.got
			WHERE arg->'event' = $1::jsonb AND arg->'params' = $2::jsonb AND arg->'event'->>'id' = $3
			  AND (SELECT count(*) FROM jsonb_object_keys(arg)) = 2`,
			string(ev.JSON()), string(params), ev.ID.String())
		if !ok {
			t.Fatalf("event %s was not recorded once with its envelope", ev.ID)
		}
	}
	if got := pgtest.QueryValue[string](db, `SELECT arg->'event'->'new'->>'total' FROM audit.got WHERE arg->'event'->>'id' = '0/3E8:2'`); got != "1.50" {
		t.Fatalf("unexpected exact numeric in the event; got %q; want 1.50", got)
	}
}

func TestDefaultParamsAndNames(t *testing.T) {
	db, pool := setup(t, recorder+`
		CREATE SCHEMA "Audit";
		CREATE FUNCTION "Audit"."Record$1"(arg jsonb) RETURNS int LANGUAGE sql AS $$
			INSERT INTO public.got (arg) VALUES (arg || '{"via": "Audit.Record$1"}') RETURNING 1 $$;`)
	f := func(name string) {
		t.Helper()
		if err := sinktest.Deliver(t, newSink(t, Config{FunctionName: name}, pool), sinktest.Events(1, 1)[0]); err != nil {
			t.Fatalf("unexpected error calling %s: %v", name, err)
		}
	}
	f("record")
	f("public.record")
	f("Audit.Record$1")
	if got := pgtest.QueryValue[string](db, `SELECT string_agg(arg->>'params' || coalesce(arg->>'via', ''), ' ' ORDER BY n) FROM got`); got != "{} {} {}Audit.Record$1" {
		t.Fatalf("unexpected calls; got %q", got)
	}
	// Names are used as written: the folded name does not exist.
	sinktest.WantClass(t, sinktest.Deliver(t, newSink(t, Config{FunctionName: "audit.record$1"}, pool), sinktest.Events(1, 1)[0]), "sql_3F000", false)
	sinktest.WantClass(t, sinktest.Deliver(t, newSink(t, Config{FunctionName: "Record"}, pool), sinktest.Events(1, 1)[0]), "sql_42883", false)
}

func TestFunctionRaisesGoesToDLQ(t *testing.T) {
	_, pool := setup(t, `CREATE FUNCTION reject(arg jsonb) RETURNS void LANGUAGE plpgsql AS $$
		BEGIN RAISE EXCEPTION 'rejected order with status %', arg->'event'->'new'->>'status'; END $$;`)
	dlq := sinktest.Run(t, newSink(t, Config{FunctionName: "reject"}, pool), sinktest.Events(3, 3), sinktest.RunOptions{})
	letters := dlq.Snapshot()
	if len(letters) != 3 {
		t.Fatalf("unexpected dead letters; got %d; want 3", len(letters))
	}
	for _, dl := range letters {
		if dl.Attempts != 1 || sinks.Class(dl.Err) != "sql_P0001" {
			t.Fatalf("unexpected letter; got attempts %d, class %q; want 1, sql_P0001", dl.Attempts, sinks.Class(dl.Err))
		}
		if strings.Contains(dl.Err.Error(), "pending") {
			t.Fatalf("the error shows a row value: %v", dl.Err)
		}
		var pgErr *pgconn.PgError
		if !errors.As(dl.Err, &pgErr) || !strings.Contains(pgErr.Message, "pending") {
			t.Fatalf("the server's error is not reachable with errors.As: %v", dl.Err)
		}
	}
}

func TestMissingFunctionGoesToDLQ(t *testing.T) {
	_, pool := setup(t, "")
	dlq := sinktest.Run(t, newSink(t, Config{FunctionName: "public.nope"}, pool), sinktest.Events(2, 2), sinktest.RunOptions{})
	letters := dlq.Snapshot()
	if len(letters) != 2 {
		t.Fatalf("unexpected dead letters; got %d; want 2", len(letters))
	}
	for _, dl := range letters {
		if dl.Attempts != 1 || sinks.Class(dl.Err) != "sql_42883" {
			t.Fatalf("unexpected letter; got attempts %d, class %q; want 1, sql_42883", dl.Attempts, sinks.Class(dl.Err))
		}
	}
}

func TestSerializationFailureRetried(t *testing.T) {
	// nextval is not rolled back with the failing call, so it counts attempts.
	db, pool := setup(t, recorder+`
		CREATE SEQUENCE tries;
		CREATE FUNCTION flaky(arg jsonb) RETURNS void LANGUAGE plpgsql AS $$
		BEGIN
			IF nextval('tries') <= 2 THEN
				RAISE EXCEPTION 'try again' USING ERRCODE = 'serialization_failure';
			END IF;
			PERFORM record(arg);
		END $$;`)
	evs := sinktest.Events(5, 5)
	dlq := sinktest.Run(t, newSink(t, Config{FunctionName: "flaky"}, pool), evs, sinktest.RunOptions{})
	if n := len(dlq.Snapshot()); n != 0 {
		t.Fatalf("unexpected dead letters: %v", dlq.Snapshot()[0].Err)
	}
	if n := pgtest.QueryValue[int64](db, `SELECT count(DISTINCT arg->'event'->>'id') FROM got`); n != 5 {
		t.Fatalf("unexpected delivered events; got %d; want 5", n)
	}
	if n := pgtest.QueryValue[int64](db, `SELECT last_value FROM tries`); n != 7 {
		t.Fatalf("unexpected calls; got %d; want 7 (2 failures, 5 successes)", n)
	}
}

func TestTimeout(t *testing.T) {
	db, pool := setup(t, `CREATE FUNCTION slow(arg jsonb) RETURNS void LANGUAGE sql AS $$ SELECT pg_sleep(30) $$;`)
	err := sinktest.Deliver(t, newSink(t, Config{FunctionName: "slow", Timeout: 200 * time.Millisecond}, pool), sinktest.Events(1, 1)[0])
	sinktest.WantClass(t, err, "timeout", true)
	// The call was cancelled on the server, not left running in its backend.
	if n := pgtest.QueryValue[int64](db, `SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query LIKE 'SELECT "slow"%'`); n != 0 {
		t.Fatalf("the timed-out call still runs on the server (%d backends)", n)
	}
	// The pool still works.
	if err := sinktest.Deliver(t, newSink(t, Config{FunctionName: "pg_sleep"}, pool), sinktest.Events(1, 1)[0]); sinks.Class(err) != "sql_42883" {
		t.Fatalf("unexpected error after the timeout; got %v; want sql_42883", err)
	}
}

func TestCancelled(t *testing.T) {
	_, pool := setup(t, `CREATE FUNCTION slow(arg jsonb) RETURNS void LANGUAGE sql AS $$ SELECT pg_sleep(30) $$;`)
	s := newSink(t, Config{FunctionName: "slow"}, pool)
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	err := s.Deliver(ctx, sinktest.Events(1, 1)[0])
	if !errors.Is(err, context.Canceled) || pipeline.Retryable(err) {
		t.Fatalf("unexpected error; got %v; want context.Canceled, not retryable", err)
	}
}

func TestNulInEvent(t *testing.T) {
	db, pool := setup(t, recorder)
	ev := sinktest.Events(1, 1)[0]
	ev.New.Values[1] = json.RawMessage(`"a\u0000b"`)
	sinktest.WantClass(t, sinktest.Deliver(t, newSink(t, Config{FunctionName: "record"}, pool), ev), "jsonb_nul", false)
	ev = sinktest.Events(1, 1)[0]
	ev.New.Values[1] = json.RawMessage(`"a\\u0000b"`) // an escaped backslash, then text
	if err := sinktest.Deliver(t, newSink(t, Config{FunctionName: "record"}, pool), ev); err != nil {
		t.Fatalf("unexpected error: %v", err)
	}
	if got := pgtest.QueryValue[string](db, `SELECT arg->'event'->'new'->>'status' FROM got`); got != `a\u0000b` {
		t.Fatalf("unexpected status; got %q", got)
	}
}

func TestPostgresRestart(t *testing.T) {
	db, pool := setup(t, recorder+`
		CREATE FUNCTION slow_record(arg jsonb) RETURNS void LANGUAGE plpgsql AS $$
		BEGIN PERFORM pg_sleep(0.005); PERFORM record(arg); END $$;`)
	evs := sinktest.Events(400, 50)
	var restarted atomic.Bool
	during := func() {
		defer restarted.Store(true)
		for pgtest.QueryValue[int64](db, `SELECT count(*) FROM got`) < 40 {
			time.Sleep(10 * time.Millisecond)
		}
		if err := db.Server.Kill(); err != nil {
			t.Errorf("kill: %v", err)
		}
		if err := db.Server.Start(); err != nil {
			t.Errorf("start: %v", err)
		}
	}
	sink := &failCounter{Sink: newSink(t, Config{FunctionName: "slow_record"}, pool)}
	dlq := sinktest.Run(t, sink, evs, sinktest.RunOptions{
		Retry:  pipeline.RetryPolicy{MaxAttempts: 200, Strategy: pipeline.BackoffFixed, Initial: 100 * time.Millisecond},
		During: during,
	})
	for !restarted.Load() { // Run may settle before the restart is complete
		time.Sleep(10 * time.Millisecond)
	}
	if n := len(dlq.Snapshot()); n != 0 {
		t.Fatalf("unexpected dead letters: %v", dlq.Snapshot()[0].Err)
	}
	if n := pgtest.QueryValue[int64](db, `SELECT count(DISTINCT arg->'event'->>'id') FROM got`); n != int64(len(evs)) {
		t.Fatalf("unexpected delivered events; got %d; want %d", n, len(evs))
	}
	if sink.fails.Load() == 0 {
		t.Fatalf("no call failed: the restart did not happen during delivery")
	}
}

// failCounter counts the transient failures of the real sink it wraps.
type failCounter struct {
	*Sink
	fails atomic.Int64
}

func (f *failCounter) Deliver(ctx context.Context, ev *decoder.Event) error {
	err := f.Sink.Deliver(ctx, ev)
	if err != nil && pipeline.Retryable(err) {
		f.fails.Add(1)
	}
	return err
}

func TestFunctionNames(t *testing.T) {
	f := func(name string, ok bool) {
		t.Helper()
		_, err := ParseFunctionName(name)
		if (err == nil) != ok {
			t.Fatalf("unexpected ParseFunctionName(%q) error; got %v; want ok=%v", name, err, ok)
		}
		_, err = New(t.Context(), Config{FunctionName: name}, sinks.Deps{DB: &pgxpool.Pool{}})
		if (err == nil) != ok {
			t.Fatalf("unexpected New error for %q; got %v; want ok=%v", name, err, ok)
		}
	}
	f("record", true)
	f("public.record", true)
	f("_x$1.Y_2", true)
	f(strings.Repeat("a", 63), true)
	f(strings.Repeat("a", 64), false)
	f("", false)
	f("orders; DROP", false)
	f("orders; DROP TABLE x", false)
	f("a.b.c", false)
	f(".a", false)
	f("a.", false)
	f("a..b", false)
	f("1abc", false)
	f("$abc", false)
	f(`"quoted"`, false)
	f("a b", false)
	f("fn()", false)
	f("é", false)
}

func TestNewErrors(t *testing.T) {
	if _, err := New(t.Context(), Config{FunctionName: "record"}, sinks.Deps{}); err == nil || !strings.Contains(err.Error(), "no connection pool") {
		t.Fatalf("unexpected error without a pool; got %v", err)
	}
	f := func(cfg Config, want string) {
		t.Helper()
		_, err := New(t.Context(), cfg, sinks.Deps{DB: &pgxpool.Pool{}})
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("unexpected error; got %v; want one containing %q", err, want)
		}
	}
	f(Config{FunctionName: "f", Params: json.RawMessage(`{`)}, "not valid JSON")
	f(Config{FunctionName: "f", Params: json.RawMessage(`{"a": "\u0000"}`)}, `\u0000`)
	f(Config{FunctionName: "f", Timeout: -1}, "timeout")
}

func TestClassify(t *testing.T) {
	ctx := context.Background()
	f := func(code, class string, retry bool) {
		t.Helper()
		err := Classify(ctx, ctx, `"f"`, &pgconn.PgError{Severity: "ERROR", Code: code, Message: "secret 42"})
		if got := sinks.Class(err); got != class {
			t.Fatalf("unexpected class for %s; got %q; want %q", code, got, class)
		}
		if got := pipeline.Retryable(err); got != retry {
			t.Fatalf("unexpected retryable for %s; got %v; want %v", code, got, retry)
		}
		if withheld := strings.HasPrefix(code, "22") || strings.HasPrefix(code, "P0"); withheld == strings.Contains(err.Error(), "secret 42") {
			t.Fatalf("unexpected message for %s: %v", code, err)
		}
	}
	f("08006", "sql_08006", true)  // connection_failure
	f("25006", "sql_25006", true)  // read_only_sql_transaction
	f("28P01", "sql_28P01", true)  // invalid_password
	f("40001", "sql_40001", true)  // serialization_failure
	f("40P01", "sql_40P01", true)  // deadlock_detected
	f("53300", "sql_53300", true)  // too_many_connections
	f("55P03", "sql_55P03", true)  // lock_not_available
	f("57014", "sql_57014", true)  // query_canceled
	f("57P01", "sql_57P01", true)  // admin_shutdown
	f("58030", "sql_58030", true)  // io_error
	f("XX000", "sql_XX000", true)  // internal_error
	f("42883", "sql_42883", false) // undefined_function
	f("42501", "sql_42501", false) // insufficient_privilege
	f("42P01", "sql_42P01", false) // undefined_table
	f("22P02", "sql_22P02", false) // invalid_text_representation
	f("22012", "sql_22012", false) // division_by_zero
	f("23505", "sql_23505", false) // unique_violation
	f("23502", "sql_23502", false) // not_null_violation
	f("P0001", "sql_P0001", false) // raise_exception
	f("P0004", "sql_P0004", false) // assert_failure
	f("0A000", "sql_0A000", false) // feature_not_supported
	f("2F005", "sql_2F005", false) // function_executed_no_return_statement
	f("3F000", "sql_3F000", false) // invalid_schema_name
	f("54001", "sql_54001", false) // statement_too_complex
	f("21000", "sql_21000", false) // cardinality_violation

	sinktest.WantClass(t, Classify(ctx, ctx, `"f"`, errors.New("conn closed")), "connection", true)
	expired, cancel := context.WithDeadline(ctx, time.Now().Add(-time.Second))
	defer cancel()
	sinktest.WantClass(t, Classify(ctx, expired, `"f"`, &pgconn.PgError{Code: "57014"}), "timeout", true)
}
