package snapshot

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/fraiseql/fraiseql-observers/decoder"
	"github.com/fraiseql/fraiseql-observers/internal/pgtest"
	"github.com/fraiseql/fraiseql-observers/lsn"
	"github.com/fraiseql/fraiseql-observers/pipeline"
)

const tableDDL = `CREATE TABLE t (id bigint PRIMARY KEY, v int NOT NULL, note text);
CREATE PUBLICATION pub FOR TABLE t;`

// TestWindowDropsRowsChangedWhileRead changes rows of a chunk between its read and its
// high watermark: the changed and deleted rows are not delivered as READ (the stream
// carries them), the others are, once, with ids that cannot be streamed ids.
func TestWindowDropsRowsChangedWhileRead(t *testing.T) {
	db := pgtest.NewDB(t)
	db.Exec(tableDDL + `INSERT INTO t SELECT g, g, 'row ' || g FROM generate_series(1, 3000) g;`)
	db.CreateSlot("s")
	h := startHarness(t, db, harnessOptions{chunkSize: 1000, afterRead: func(no int64) {
		if no == 2 {
			db.Exec(`UPDATE t SET v = -1 WHERE id = 1500; DELETE FROM t WHERE id = 1600;
			         UPDATE t SET v = -2 WHERE id = 2500; INSERT INTO t VALUES (5000, 5000, 'new')`)
		}
	}})
	info, err := h.mgr.Start(context.Background(), Request{Table: "public.t"})
	must(t, err)
	done := h.waitDone(info.ID)
	h.catchUp()
	if done.State != StateDone || done.Chunks != 4 || done.RowsRead != 3001 || done.RowsSent != 2999 {
		t.Fatalf("unexpected end state; got %s with %d chunks, %d rows read, %d sent; want done, 4, 3001, 2999",
			done.State, done.Chunks, done.RowsRead, done.RowsSent)
	}
	h.sink.mu.Lock()
	defer h.sink.mu.Unlock()
	ops := func(k int) string {
		var s []string
		for _, d := range h.sink.byKey[strconv.Itoa(k)] {
			s = append(s, d.op.String())
		}
		return strings.Join(s, ",")
	}
	for k, want := range map[int]string{1: "READ", 1500: "UPDATE", 1600: "DELETE", 2500: "UPDATE,READ", 5000: "INSERT,READ", 3000: "READ"} {
		if got := ops(k); got != want {
			t.Errorf("unexpected events of row %d; got %s; want %s", k, got, want)
		}
	}
	if evs := h.sink.byKey["2500"]; len(evs) == 2 && evs[1].new != evs[0].new {
		t.Errorf("the READ of row 2500 differs from its last change; got %s; want %s", evs[1].new, evs[0].new)
	}
	seen := map[lsn.Position]bool{}
	for _, evs := range h.sink.byKey {
		for _, d := range evs {
			if d.op != decoder.OpRead {
				continue
			}
			if d.id.Commit%8 != 7 || seen[d.id] {
				t.Fatalf("READ id %s is not unique or could be a streamed id", d.id)
			}
			seen[d.id] = true
		}
	}
	if len(seen) != 2999 {
		t.Fatalf("unexpected READ count; got %d; want 2999", len(seen))
	}
}

// TestTruncateInWindowDropsChunk truncates the table between a chunk's read and its
// high watermark: none of the chunk's rows exists any more, none is delivered.
func TestTruncateInWindowDropsChunk(t *testing.T) {
	db := pgtest.NewDB(t)
	db.Exec(tableDDL + `INSERT INTO t SELECT g, g, 'row ' || g FROM generate_series(1, 300) g;`)
	db.CreateSlot("s")
	h := startHarness(t, db, harnessOptions{chunkSize: 100, afterRead: func(no int64) {
		if no == 2 {
			db.Exec(`TRUNCATE t; INSERT INTO t VALUES (150, 1, 'after'), (250, 2, 'after')`)
		}
	}})
	info, err := h.mgr.Start(context.Background(), Request{Table: "t"})
	must(t, err)
	done := h.waitDone(info.ID)
	h.catchUp()
	reads := h.sink.reads()
	// Chunk 1 (1-100) was handed on before the truncate; chunk 2 (101-200) is dropped;
	// chunk 3 reads what is left after 200: row 250.
	if len(reads) != 101 || reads["150"] != nil || reads["250"] == nil || done.RowsSent != 101 {
		t.Fatalf("unexpected READ rows: %d rows, 150: %v, 250: %v, sent %d; want 101, none, one, 101", len(reads), reads["150"], reads["250"], done.RowsSent)
	}
}

// TestAlterTableDuringSnapshot adds a column between a chunk's read and its high
// watermark: the rows read from then on carry it, under new ids.
func TestAlterTableDuringSnapshot(t *testing.T) {
	db := pgtest.NewDB(t)
	db.Exec(tableDDL + `INSERT INTO t SELECT g, g, 'row ' || g FROM generate_series(1, 300) g;`)
	db.CreateSlot("s")
	var once sync.Once
	h := startHarness(t, db, harnessOptions{chunkSize: 100, afterRead: func(no int64) {
		if no == 2 {
			once.Do(func() { db.Exec(`ALTER TABLE t ADD COLUMN extra int DEFAULT 7`) })
		}
	}})
	info, err := h.mgr.Start(context.Background(), Request{Table: "public.t"})
	must(t, err)
	if done := h.waitDone(info.ID); done.State != StateDone {
		t.Fatalf("snapshot ended %s: %s", done.State, done.Error)
	}
	h.catchUp()
	reads := h.sink.reads()
	for k := 1; k <= 300; k++ {
		evs := reads[strconv.Itoa(k)]
		if len(evs) == 0 {
			t.Fatalf("row %d was not read", k)
		}
		last := evs[len(evs)-1]
		// Rows of the first chunk are read again when the ALTER came before the chunk was
		// recorded as completed; from row 101 on every row is read after the ALTER.
		if !strings.Contains(last.new, `"extra":7`) && (k > 100 || len(evs) > 1) {
			t.Fatalf("row %d: last READ %s %s; want the column extra", k, last.id, last.new)
		}
		if len(evs) == 2 && evs[0].id == evs[1].id {
			t.Fatalf("row %d read again under the same id %s after the ALTER", k, evs[0].id)
		}
	}
}

// TestSnapshotWhileWriting backfills a table while writers update, delete and insert
// random rows of it, and checks the result two ways: for every key, the last event
// delivered equals the table's final row (or is a DELETE of a row that is gone); and
// against an oracle slot created at the same point as the service's, every streamed
// change of each row is delivered in order and every READ holds exactly the row's
// state at that point of its history. SNAPSHOT_TEST_ROWS sets the size (default
// 20000; make bench runs it with 1000000).
func TestSnapshotWhileWriting(t *testing.T) {
	rows := 20000
	if v := os.Getenv("SNAPSHOT_TEST_ROWS"); v != "" {
		n, err := strconv.Atoi(v)
		must(t, err)
		rows = n
	}
	db := pgtest.NewDB(t)
	db.Exec(tableDDL + `INSERT INTO t SELECT g, g, 'row ' || g FROM generate_series(1, ` + strconv.Itoa(rows) + `) g;`)
	initial := rowsJSON(t, db, "")
	db.CreateSlot("s")
	db.CreateSlot("oracle") // quiescent: both slots see the same changes from the same state
	chunk := max(200, rows/50)
	h := startHarness(t, db, harnessOptions{chunkSize: chunk})

	ctx, stopWriters := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var nextID atomic.Int64
	nextID.Store(int64(rows))
	var writes atomic.Int64
	pool := pgtest.Pool(t, db.DSN())
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func(seed uint64) {
			defer wg.Done()
			r := rand.New(rand.NewPCG(seed, 7))
			for ctx.Err() == nil {
				k := 1 + r.Int64N(nextID.Load())
				var err error
				switch p := r.IntN(100); {
				case p < 55:
					_, err = pool.Exec(ctx, `UPDATE t SET v = v + 1, note = md5(random()::text) WHERE id = $1`, k)
				case p < 70:
					_, err = pool.Exec(ctx, `DELETE FROM t WHERE id = $1`, k)
				case p < 85:
					_, err = pool.Exec(ctx, `INSERT INTO t VALUES ($1, 0, 'inserted')`, nextID.Add(1))
				case p < 95: // several rows, one transaction
					_, err = pool.Exec(ctx, `UPDATE t SET v = -v WHERE id IN ($1, $2, $3)`, k, k+1, 1+r.Int64N(nextID.Load()))
				default: // a transaction open across chunk reads
					tx, berr := pool.Begin(ctx)
					if berr != nil {
						err = berr
						break
					}
					if _, err = tx.Exec(ctx, `UPDATE t SET v = v * 2 WHERE id = $1`, k); err == nil {
						time.Sleep(time.Duration(r.IntN(30)) * time.Millisecond)
						err = tx.Commit(ctx)
					} else {
						tx.Rollback(ctx)
					}
				}
				if err != nil && ctx.Err() == nil {
					t.Errorf("writer: %v", err)
					return
				}
				writes.Add(1)
			}
		}(uint64(w))
	}
	time.Sleep(200 * time.Millisecond) // writers are busy when the snapshot starts
	info, err := h.mgr.Start(context.Background(), Request{Table: "public.t"})
	must(t, err)
	done := h.waitDone(info.ID)
	time.Sleep(100 * time.Millisecond)
	stopWriters()
	wg.Wait()
	h.catchUp()
	if done.State != StateDone {
		t.Fatalf("snapshot ended %s: %s", done.State, done.Error)
	}
	t.Logf("%d rows, %d writes; snapshot: %d chunks, %d rows read, %d READ events (%d left to the stream)",
		rows, writes.Load(), done.Chunks, done.RowsRead, done.RowsSent, done.RowsRead-done.RowsSent)

	final := rowsJSON(t, db, "")
	h.sink.mu.Lock()
	defer h.sink.mu.Unlock()
	// 1. The table itself: the last event of every key.
	for k, row := range final {
		evs := h.sink.byKey[k]
		if len(evs) == 0 {
			t.Fatalf("row %s (%s) was never delivered", k, row)
		}
		if last := evs[len(evs)-1]; last.op == decoder.OpDelete || last.new != row {
			t.Fatalf("row %s: last event %s %s %s; want the row %s", k, last.id, last.op, last.new, row)
		}
	}
	for k, evs := range h.sink.byKey {
		if _, ok := final[k]; !ok && evs[len(evs)-1].op != decoder.OpDelete {
			t.Fatalf("row %s is gone but its last event is %s %s", k, evs[len(evs)-1].op, evs[len(evs)-1].id)
		}
	}
	// 2. The oracle slot: streamed changes in order, each READ equal to the state of its
	// row at its place.
	oracle := map[string][]*decoder.Event{}
	for _, ev := range oracleChanges(t, db, "oracle") {
		oracle[keyOf(ev)] = append(oracle[keyOf(ev)], ev)
	}
	keys := map[string]bool{}
	for k := range initial {
		keys[k] = true
	}
	for k := range oracle {
		keys[k] = true
	}
	readsChecked := 0
	for k := range keys {
		state, exists := initial[k]
		changes := oracle[k]
		i := 0
		for _, d := range h.sink.byKey[k] {
			if d.op == decoder.OpRead {
				if !exists || d.new != state {
					t.Fatalf("row %s: READ %s holds %s, but at that point the row is %q (exists %v)", k, d.id, d.new, state, exists)
				}
				readsChecked++
				continue
			}
			if i >= len(changes) {
				t.Fatalf("row %s: delivered change %s %s that the oracle does not have", k, d.id, d.op)
			}
			want := changes[i]
			if d.id != want.ID || d.op != want.Op {
				t.Fatalf("row %s: change %d delivered as %s %s; the oracle has %s %s", k, i, d.id, d.op, want.ID, want.Op)
			}
			i++
			switch want.Op {
			case decoder.OpDelete:
				state, exists = "", false
			default:
				state, exists = string(want.New.AppendJSON(nil)), true
			}
		}
		if i != len(changes) {
			t.Fatalf("row %s: %d of the oracle's %d changes delivered", k, i, len(changes))
		}
	}
	if int64(readsChecked) != done.RowsSent {
		t.Fatalf("checked %d READ events; the snapshot reports %d", readsChecked, done.RowsSent)
	}
}

// TestResumeFromLastCompletedChunk stops the service in the middle of a backfill (no
// drain, no final progress write, as a crash) and starts it again: the snapshot
// resumes after the last completed chunk, every row is delivered at least once, and a
// row delivered twice has the same id both times.
func TestResumeFromLastCompletedChunk(t *testing.T) {
	db := pgtest.NewDB(t)
	db.Exec(tableDDL + `INSERT INTO t SELECT g, g, 'row ' || g FROM generate_series(1, 5000) g;`)
	db.CreateSlot("s")
	first := newRecordSink()
	first.block = func(ev *decoder.Event) bool { // rows after 2500 are never delivered
		n, _ := strconv.Atoi(string(ev.Key.Values[0]))
		return ev.Op == decoder.OpRead && n > 2500
	}
	h := startHarness(t, db, harnessOptions{chunkSize: 1000, sink: first})
	info, err := h.mgr.Start(context.Background(), Request{Table: "public.t"})
	must(t, err)
	// Two chunks complete, the third cannot: stop then, as a crash would.
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		if p, _ := h.mgr.Get(context.Background(), info.ID); p.Chunks >= 2 && len(first.reads()) >= 2500 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	h.stop()
	stored, err := h.mgr.store.get(context.Background(), info.ID)
	must(t, err)
	before := first.reads()
	if stored.Chunks != 2 || stored.State != StateRunning || len(before) != 2500 {
		t.Fatalf("unexpected state before the restart: %s, %d chunks stored, %d rows delivered; want running, 2, 2500", stored.State, stored.Chunks, len(before))
	}
	completed, _ := strconv.Atoi(stored.lastKey[0])

	h2 := startHarness(t, db, harnessOptions{chunkSize: 1000})
	done := h2.waitDone(info.ID)
	if done.State != StateDone {
		t.Fatalf("snapshot ended %s: %s", done.State, done.Error)
	}
	after := h2.sink.reads()
	for k, evs := range after {
		n, _ := strconv.Atoi(k)
		if n <= completed {
			t.Fatalf("row %d of a completed chunk (up to %d) was read again after the restart", n, completed)
		}
		if b := before[k]; len(b) > 0 && b[0].id != evs[0].id {
			t.Fatalf("row %d delivered again with another id: %s then %s", n, b[0].id, evs[0].id)
		}
	}
	repeated := 0
	for k := 1; k <= 5000; k++ {
		s := strconv.Itoa(k)
		if len(before[s])+len(after[s]) == 0 {
			t.Fatalf("row %d was never delivered", k)
		}
		if len(before[s]) > 0 && len(after[s]) > 0 {
			repeated++
		}
	}
	if repeated != 500 {
		t.Fatalf("unexpected rows delivered twice; got %d; want 500 (2001-2500: the chunk in flight)", repeated)
	}
}

// TestWideRowsEndChunksEarly reads rows of 100 kB in chunks of 1000: each chunk ends
// once its events hold an eighth of the pipeline's budget, and the snapshot goes on
// after it.
func TestWideRowsEndChunksEarly(t *testing.T) {
	db := pgtest.NewDB(t)
	db.Exec(tableDDL + `ALTER TABLE t ALTER note SET STORAGE EXTERNAL;
	INSERT INTO t SELECT g, g, repeat(md5(g::text), 3200) FROM generate_series(1, 200) g;`)
	db.CreateSlot("s")
	h := startHarness(t, db, harnessOptions{chunkSize: 1000})
	info, err := h.mgr.Start(context.Background(), Request{Table: "public.t"})
	must(t, err)
	done := h.waitDone(info.ID)
	if done.State != StateDone || done.RowsSent != 200 || done.Chunks < 5 {
		t.Fatalf("unexpected end: %s, %d rows sent in %d chunks; want done, 200 rows, several chunks", done.State, done.RowsSent, done.Chunks)
	}
	if reads := h.sink.reads(); len(reads) != 200 {
		t.Fatalf("unexpected READ rows: %d; want 200", len(reads))
	}
}

// TestRequestErrorsStartNothing checks the requests that must be refused with a
// clear error, without recording a snapshot.
func TestRequestErrorsStartNothing(t *testing.T) {
	db := pgtest.NewDB(t)
	db.Exec(`CREATE TABLE t (id bigint PRIMARY KEY, v int NOT NULL, note text);
	         CREATE TABLE nokey (a int, b text);
	         CREATE TABLE nullable (a int UNIQUE, b text);
	         CREATE TABLE unpublished (id int PRIMARY KEY);
	         CREATE TABLE quiet (id int PRIMARY KEY);
	         CREATE PUBLICATION pub FOR TABLE t, nokey, nullable, quiet;`)
	db.CreateSlot("s")
	h := startHarness(t, db, harnessOptions{observers: func(sink pipeline.Sink) []*pipeline.Observer {
		return []*pipeline.Observer{
			{Name: "o", Schema: "public", Table: "t", Ops: []decoder.Op{decoder.OpInsert, decoder.OpRead},
				Actions: []*pipeline.Action{{ID: "o.a", Type: "test", Sink: sink}}},
			{Name: "q", Schema: "public", Table: "quiet", Ops: []decoder.Op{decoder.OpInsert},
				Actions: []*pipeline.Action{{ID: "q.a", Type: "test", Sink: sink}}},
		}
	}})
	cases := []struct {
		req         Request
		field, frag string
	}{
		{Request{Table: "public.nokey"}, "table", "has no primary key and no unique index over NOT NULL columns"},
		{Request{Table: "public.nullable"}, "table", "has no primary key"},
		{Request{Table: "public.unpublished"}, "table", "is not in publication pub"},
		{Request{Table: "public.missing"}, "table", "does not exist"},
		{Request{Table: "a.b.c"}, "table", "not a table name"},
		{Request{Table: "public.t", Where: "1=1); DROP TABLE t; --"}, "where", "unbalanced parentheses"},
		{Request{Table: "public.t", Where: "true; DROP TABLE t"}, "where", "semicolon"},
		{Request{Table: "public.t", Where: "1=1) UNION SELECT 1, 2, 'x' WHERE (true"}, "where", "unbalanced parentheses"},
		{Request{Table: "public.t", Where: "v = 1 -- and more"}, "where", "comments are not allowed"},
		{Request{Table: "public.t", Where: "nosuch = 1"}, "where", `column "nosuch" does not exist`},
		{Request{Table: "public.t", Where: "v + 1"}, "where", "must be a condition"},
		{Request{Table: "public.t", Where: "v = $1"}, "where", "parameters"},
		{Request{Table: "public.t", Observer: "nobody"}, "observer", `no observer named "nobody"`},
		{Request{Table: "public.t", Observer: "q"}, "observer", `does not watch public.t`},
		{Request{Table: "public.quiet"}, "observer", "no observer receives READ events of public.quiet"},
	}
	for _, c := range cases {
		_, err := h.mgr.Start(context.Background(), c.req)
		var re *RequestError
		if !errors.As(err, &re) || re.Field != c.field || !strings.Contains(re.Msg, c.frag) {
			t.Errorf("request %+v: unexpected error %v; want a %s error containing %q", c.req, err, c.field, c.frag)
		}
	}
	infos, err := h.mgr.List(context.Background())
	must(t, err)
	if len(infos) != 0 {
		t.Fatalf("refused requests recorded snapshots: %+v", infos)
	}
	if n := pgtest.QueryValue[int64](db, `SELECT count(*) FROM t`); n != 0 {
		t.Fatalf("unexpected rows in t: %d", n)
	}
	// A valid request next to a running one of the same table is a conflict.
	db.Exec(`INSERT INTO t SELECT g, g, '' FROM generate_series(1, 10) g`)
	info, err := h.mgr.Start(context.Background(), Request{Table: "public.t", Where: "note = 'x;y' OR v > 0"})
	must(t, err)
	if _, err := h.mgr.Start(context.Background(), Request{Table: "public.t"}); !errors.As(err, new(*ConflictError)) {
		if p, _ := h.mgr.Get(context.Background(), info.ID); !p.finished() {
			t.Fatalf("second request of a running table: unexpected error %v; want a conflict", err)
		}
	}
	h.waitDone(info.ID)
}

// TestDescribeNeedsSelect refuses a table the service's role may not read.
func TestDescribeNeedsSelect(t *testing.T) {
	db := pgtest.NewDB(t)
	role := "snap_" + strings.ToLower(strings.ReplaceAll(db.Name, "-", "_"))
	db.Exec(tableDDL + `CREATE TABLE secret (id int PRIMARY KEY); ALTER PUBLICATION pub ADD TABLE secret;
	CREATE ROLE ` + role + ` LOGIN REPLICATION; GRANT SELECT ON t TO ` + role)
	t.Cleanup(func() { db.Exec(`DROP OWNED BY ` + role + `; DROP ROLE ` + role) })
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, fmt.Sprintf("postgres://%s@127.0.0.1:%d/%s?sslmode=disable", role, db.Server.Port, db.Name))
	must(t, err)
	defer conn.Close(ctx)
	if _, err := describe(ctx, conn, "pub", "public", "t"); err != nil {
		t.Fatalf("unexpected error for a readable table: %v", err)
	}
	_, err = describe(ctx, conn, "pub", "public", "secret")
	var re *RequestError
	if !errors.As(err, &re) || !strings.Contains(re.Msg, `the service's role may not read public.secret: GRANT SELECT ON "public"."secret"`) {
		t.Fatalf("unexpected error for an unreadable table: %v", err)
	}
}

// TestWhereAndObserver backfills the rows matching --where into one observer that
// does not list READ.
func TestWhereAndObserver(t *testing.T) {
	db := pgtest.NewDB(t)
	db.Exec(tableDDL + `INSERT INTO t SELECT g, g, 'row ' || g FROM generate_series(1, 1000) g;`)
	db.CreateSlot("s")
	other := newRecordSink()
	h := startHarness(t, db, harnessOptions{chunkSize: 64, observers: func(sink pipeline.Sink) []*pipeline.Observer {
		return []*pipeline.Observer{
			{Name: "o", Schema: "public", Table: "t", Ops: []decoder.Op{decoder.OpInsert, decoder.OpUpdate},
				Actions: []*pipeline.Action{{ID: "o.a", Type: "test", Sink: sink}}},
			{Name: "other", Schema: "public", Table: "t", Ops: []decoder.Op{decoder.OpRead},
				Actions: []*pipeline.Action{{ID: "other.a", Type: "test", Sink: other}}},
		}
	}})
	info, err := h.mgr.Start(context.Background(), Request{Table: "public.t", Where: "v % 3 = 0 AND note <> 'it''s; (not)'", Observer: "o"})
	must(t, err)
	done := h.waitDone(info.ID)
	h.catchUp()
	reads := h.sink.reads()
	if len(reads) != 333 || done.RowsSent != 333 || len(other.reads()) != 0 {
		t.Fatalf("unexpected deliveries: %d READ to o (want 333), %d to other (want 0), sent %d", len(reads), len(other.reads()), done.RowsSent)
	}
	keys := make([]int, 0, len(reads))
	for k := range reads {
		n, _ := strconv.Atoi(k)
		keys = append(keys, n)
	}
	slices.Sort(keys)
	if keys[0] != 3 || keys[len(keys)-1] != 999 {
		t.Fatalf("unexpected rows: %d to %d", keys[0], keys[len(keys)-1])
	}
}
