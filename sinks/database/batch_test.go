package database

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fraiseql/fraiseql-observers/decoder"
	"github.com/fraiseql/fraiseql-observers/internal/pgtest"
	"github.com/fraiseql/fraiseql-observers/internal/sinktest"
	"github.com/fraiseql/fraiseql-observers/sinks"
)

// batchRecorder records each call with its transaction id; it rejects events whose
// status is 'bad' and inserts the status into a table with a deferred unique
// constraint, so a status already there fails at COMMIT.
const batchRecorder = `
CREATE TABLE got (n bigserial PRIMARY KEY, arg jsonb NOT NULL, xid bigint NOT NULL);
CREATE TABLE seen (status text, CONSTRAINT seen_status UNIQUE (status) DEFERRABLE INITIALLY DEFERRED);
INSERT INTO seen VALUES ('taken');
CREATE SEQUENCE tries;
CREATE SEQUENCE calls; -- not rolled back: counts every call
CREATE FUNCTION record(arg jsonb) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
	status text := arg->'event'->'new'->>'status';
BEGIN
	PERFORM nextval('calls');
	IF status = 'bad' THEN
		RAISE EXCEPTION 'rejected';
	END IF;
	IF status = 'flaky' AND nextval('tries') <= 2 THEN
		RAISE EXCEPTION 'try again' USING ERRCODE = 'serialization_failure';
	END IF;
	IF status IN ('taken', 'once') THEN
		INSERT INTO seen VALUES (status);
	END IF;
	INSERT INTO got (arg, xid) VALUES (arg, txid_current());
END $$;`

func newBatchSink(t *testing.T, pool *pgxpool.Pool, size int) *Sink {
	t.Helper()
	s, err := New(t.Context(), Config{FunctionName: "record", Batch: sinks.Batch{BatchSize: size}}, sinks.Deps{DB: pool})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// eventsWithStatus returns n events; statuses maps an event index to its status.
func eventsWithStatus(n int, statuses map[int]string) []*decoder.Event {
	evs := sinktest.Events(n, n)
	for i, s := range statuses {
		b, _ := json.Marshal(s)
		evs[i].New.Values[1] = b
	}
	return evs
}

func TestBatchRejectedEventAlone(t *testing.T) {
	db, pool := setup(t, batchRecorder)
	evs := eventsWithStatus(40, map[int]string{3: "bad", 4: "bad", 17: "bad", 39: "bad"})
	dlq := sinktest.Run(t, newBatchSink(t, pool, 10), evs, sinktest.RunOptions{Concurrency: 2, BatchSize: 20})
	letters := dlq.Snapshot()
	if len(letters) != 4 {
		t.Fatalf("unexpected dead letters; got %d; want 4", len(letters))
	}
	for _, dl := range letters {
		if dl.Attempts != 1 || sinks.Class(dl.Err) != "sql_P0001" {
			t.Fatalf("unexpected letter; got attempts %d, class %q; want 1, sql_P0001", dl.Attempts, sinks.Class(dl.Err))
		}
	}
	if n := pgtest.QueryValue[int64](db, `SELECT count(*) FROM got`); n != 36 {
		t.Fatalf("unexpected calls committed; got %d; want 36, each once", n)
	}
	if n := pgtest.QueryValue[int64](db, `SELECT count(DISTINCT arg->'event'->>'id') FROM got WHERE arg->'event'->'new'->>'status' = 'pending'`); n != 36 {
		t.Fatalf("unexpected events delivered; got %d; want 36", n)
	}
	if n := pgtest.QueryValue[int64](db, `SELECT count(DISTINCT xid) FROM got`); n >= 36 {
		t.Fatalf("no batching happened: %d transactions for 36 calls", n)
	}
}

func TestBatchCommitFailureFallsBackToSingleCalls(t *testing.T) {
	db, pool := setup(t, batchRecorder)
	// Event 5 violates the deferred constraint at COMMIT; event 6 inserts a new status
	// in the same batch, which must not be lost when the batch's COMMIT fails.
	evs := eventsWithStatus(10, map[int]string{5: "taken", 6: "once"})
	errs := make([]error, len(evs))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	newBatchSink(t, pool, 10).DeliverBatch(ctx, evs, errs)
	for i, err := range errs {
		switch {
		case i == 5:
			sinktest.WantClass(t, err, "sql_23505", false)
		case err != nil:
			t.Fatalf("unexpected error for event %d: %v", i, err)
		}
	}
	if n := pgtest.QueryValue[int64](db, `SELECT count(*) FROM got`); n != 9 {
		t.Fatalf("unexpected calls committed; got %d; want 9, each once", n)
	}
	if n := pgtest.QueryValue[int64](db, `SELECT count(*) FROM seen WHERE status = 'once'`); n != 1 {
		t.Fatalf("unexpected rows of status once; got %d; want 1", n)
	}
	if n := pgtest.QueryValue[int64](db, `SELECT last_value FROM calls`); n != 20 {
		t.Fatalf("unexpected calls; got %d; want 20 (10 in the failed batch, 10 alone)", n)
	}
}

func TestBatchTransientFailureRetried(t *testing.T) {
	db, pool := setup(t, batchRecorder)
	evs := eventsWithStatus(20, map[int]string{2: "flaky", 12: "flaky"})
	dlq := sinktest.Run(t, newBatchSink(t, pool, 10), evs, sinktest.RunOptions{Concurrency: 2, BatchSize: 10})
	if n := len(dlq.Snapshot()); n != 0 {
		t.Fatalf("unexpected dead letters: %v", dlq.Snapshot()[0].Err)
	}
	if n := pgtest.QueryValue[int64](db, `SELECT count(*) FROM got`); n != 20 {
		t.Fatalf("unexpected calls committed; got %d; want 20, each once", n)
	}
}

func TestBatchJSONNulAlone(t *testing.T) {
	db, pool := setup(t, batchRecorder)
	evs := sinktest.Events(5, 5)
	evs[2].New.Values[1] = json.RawMessage(`"a\u0000b"`)
	dlq := sinktest.Run(t, newBatchSink(t, pool, 10), evs, sinktest.RunOptions{Concurrency: 1, BatchSize: 5})
	if letters := dlq.Snapshot(); len(letters) != 1 || sinks.Class(letters[0].Err) != "jsonb_nul" {
		t.Fatalf("unexpected dead letters; got %d; want one jsonb_nul", len(letters))
	}
	if n := pgtest.QueryValue[int64](db, `SELECT count(*) FROM got`); n != 4 {
		t.Fatalf("unexpected calls committed; got %d; want 4", n)
	}
}

// TestBatchSize: batch_size is 1 to 10000; with 1 (the default) a delivery of
// several events is one call and one transaction per event, not a batch.
func TestBatchSize(t *testing.T) {
	for _, size := range []int{-1, sinks.MaxBatchSize + 1} {
		_, err := New(t.Context(), Config{FunctionName: "f", Batch: sinks.Batch{BatchSize: size}}, sinks.Deps{DB: &pgxpool.Pool{}})
		sinktest.WantKeyError(t, err, "batch_size", "between 1 and")
	}
	db, pool := setup(t, batchRecorder)
	evs := eventsWithStatus(5, nil)
	errs := make([]error, len(evs))
	newBatchSink(t, pool, 1).DeliverBatch(t.Context(), evs, errs)
	for i, err := range errs {
		if err != nil {
			t.Fatalf("unexpected error for event %d: %v", i, err)
		}
	}
	if n := pgtest.QueryValue[int64](db, `SELECT count(DISTINCT xid) FROM got`); n != 5 {
		t.Fatalf("unexpected transactions for 5 events with batch_size 1; got %d; want 5", n)
	}
}
