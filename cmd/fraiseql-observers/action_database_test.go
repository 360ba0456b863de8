package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/fraiseql/fraiseql-observers/internal/pgtest"
	"github.com/fraiseql/fraiseql-observers/internal/sinktest"
	"github.com/fraiseql/fraiseql-observers/pipeline"
)

func TestDatabaseActionDelivers(t *testing.T) {
	db := pgtest.NewDB(t)
	db.Exec(`CREATE SCHEMA audit;
		CREATE TABLE audit.got (arg jsonb);
		CREATE FUNCTION audit.record(arg jsonb) RETURNS void LANGUAGE sql AS $$ INSERT INTO audit.got VALUES (arg) $$;`)
	env := map[string]string{"AUDIT_DSN": db.DSN()}
	obs, _, err := buildTestActions(t, `- type: database
  function_name: audit.record
  dsn_env: AUDIT_DSN
  timeout: 5s
  batch_size: 50
  params:
    channel: orders
    limit: 10
    ratio: 0.5
    big: 18446744073709551615
    flags: [true, null, "x"]
    nested: {a: {b: c}}
`, env, false)
	if err != nil {
		t.Fatalf("unexpected error: %v", err)
	}
	if _, ok := obs[0].Actions[0].Sink.(pipeline.BatchSink); !ok {
		t.Fatalf("batch_size 50 did not give a batching sink")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ev := sinktest.Events(1, 1)[0]
	if err := obs[0].Actions[0].Sink.Deliver(ctx, ev); err != nil {
		t.Fatalf("unexpected delivery error: %v", err)
	}
	want := `{"big": 18446744073709551615, "flags": [true, null, "x"], "limit": 10, "ratio": 0.5, "nested": {"a": {"b": "c"}}, "channel": "orders"}`
	if got := pgtest.QueryValue[string](db, `SELECT (arg->'params')::text FROM audit.got WHERE arg->'event'->>'id' = $1`, ev.ID.String()); got != want {
		t.Fatalf("unexpected params; got %s; want %s", got, want)
	}
}

func TestDatabaseActionConfig(t *testing.T) {
	env := map[string]string{"AUDIT_DSN": "postgres://observer@127.0.0.1:5432/app", "BAD_DSN": "postgres://u:s3cret@[::1"}
	if _, _, err := buildTestActions(t, "- type: database\n  function_name: public.notify\n  params: {a: 1}\n", env, true); err != nil {
		t.Fatalf("unexpected error: %v", err)
	}
	// Without a pool (the source pool is not wired) the action fails loudly.
	if _, _, err := buildTestActions(t, "- type: database\n  function_name: notify\n", env, false); err == nil || !strings.Contains(err.Error(), "no connection pool") {
		t.Fatalf("unexpected error without a pool; got %v", err)
	}
	wantConfigErrors(t, "- type: database\n", env, "test.yaml:8:9: action o.0: function_name: required")
	wantConfigErrors(t, "- type: database\n  function_name: \"orders; DROP\"\n", env, `test.yaml:9:24: action o.0: function_name: "orders; DROP" is not an identifier`)
	wantConfigErrors(t, "- type: database\n  function_name: a.b.c\n", env, `test.yaml:9:24: action o.0: function_name: "a.b.c": write name or schema.name`)
	wantConfigErrors(t, "- type: database\n  function_name: \"\"\n", env, `test.yaml:9:24: action o.0: function_name: required`)
	wantConfigErrors(t, "- type: database\n  function_name: 1fn\n", env, `is not an identifier`)
	wantConfigErrors(t, "- type: database\n  function_name: f\n  params: [1, 2]\n", env, "test.yaml:10:17: action o.0: params: must be a mapping")
	wantConfigErrors(t, "- type: database\n  function_name: f\n  params: {x: .nan}\n", env, "test.yaml:10:21: action o.0: params.x: expected a finite number")
	wantConfigErrors(t, "- type: database\n  function_name: f\n  params: {x: \"a\\0b\"}\n", env, `params: holds a \u0000 character`)
	wantConfigErrors(t, "- type: database\n  function_name: f\n  timeout: -1s\n", env, "test.yaml:10:18: action o.0: timeout: must not be negative")
	wantConfigErrors(t, "- type: database\n  function_name: f\n  batch_size: -1\n", env, "test.yaml:10:21: action o.0: batch_size: must be between 1 and 10000")
	wantConfigErrors(t, "- type: database\n  function_name: f\n  dsn_env: MISSING\n", env, "environment variable MISSING is not set")
	wantConfigErrors(t, "- type: database\n  function_name: f\n  dsn: postgres://x\n", env, `unknown key "dsn"`)
	_, _, err := buildTestActions(t, "- type: database\n  function_name: f\n  dsn_env: BAD_DSN\n", env, true)
	if err == nil || !strings.Contains(err.Error(), "test.yaml:10:18: action o.0: dsn_env: the connection string in BAD_DSN cannot be parsed") || strings.Contains(err.Error(), "s3cret") {
		t.Fatalf("unexpected error for a bad DSN: %v", err)
	}
}
