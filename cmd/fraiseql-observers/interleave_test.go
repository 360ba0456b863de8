package main

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/fraiseql/fraiseql-observers/internal/pgtest"
	"github.com/fraiseql/fraiseql-observers/lsn"
)

// TestInterleavedTransactionsAcrossRestart is reliability test R2. Transaction A
// starts writing, stays open while B commits 100 transactions that are delivered
// and checkpointed, and the service is killed. A then writes more — among them a
// COPY of 10k rows and a multi-row INSERT ... SELECT — and commits after B. A's
// changes sit at WAL positions below the checkpoint, but its commit is above it:
// after the restart every one of them is delivered, none is taken for a duplicate,
// and each row has exactly one event id however often it was delivered.
func TestInterleavedTransactionsAcrossRestart(t *testing.T) {
	db := pgtest.NewDB(t)
	db.Exec(`CREATE TABLE t (id int PRIMARY KEY, who text NOT NULL); CREATE PUBLICATION obs_pub FOR TABLE t`)
	out := filepath.Join(t.TempDir(), "events.jsonl")
	cfg := writeConfig(t, baseConfig(db, out, ""))
	p := startService(t, nil, "start", "--config", cfg)
	waitFor(t, 30*time.Second, "the service to stream", func() bool { return slotActive(db, "obs_slot") })

	ctx := context.Background()
	a, err := db.Conn().Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Rollback(ctx)
	for id := 100000; id < 100003; id++ {
		execTx(t, a, "INSERT INTO t VALUES ($1, 'a')", id)
	}
	b := db.Conn()
	for id := 1; id <= 100; id++ {
		if _, err := b.Exec(ctx, "INSERT INTO t VALUES ($1, 'b')", id); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 30*time.Second, "B's 100 events", func() bool { return len(readEvents(t, out)) >= 100 })
	var lastB string // the commit LSN of B's last transaction
	for _, ev := range readEvents(t, out) {
		if c, _ := lsn.Parse(ev.CommitLSN); lastB == "" || c > mustLSN(t, lastB) {
			lastB = ev.CommitLSN
		}
	}
	waitFor(t, 30*time.Second, "a checkpoint past B's commits", func() bool {
		return pgtest.QueryValue[bool](db, `SELECT count(*) > 0 AND bool_and(commit_lsn >= $1::pg_lsn) FROM observer_checkpoints WHERE action <> '*'`, lastB)
	})
	p.kill()

	// A goes on while the service is down: a COPY, a multi-row INSERT, a few more rows.
	rows := make([][]any, 10000)
	for i := range rows {
		rows[i] = []any{200000 + i, "a-copy"}
	}
	if n, err := a.CopyFrom(ctx, pgx.Identifier{"t"}, []string{"id", "who"}, pgx.CopyFromRows(rows)); err != nil || n != int64(len(rows)) {
		t.Fatalf("COPY: %d rows, %v", n, err)
	}
	execTx(t, a, "INSERT INTO t SELECT g, 'a-select' FROM generate_series(300000, 300999) g")
	execTx(t, a, "INSERT INTO t VALUES (100003, 'a'), (100004, 'a')")
	if err := a.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	want := 100 + 5 + len(rows) + 1000

	p = startService(t, nil, "start", "--config", cfg)
	var eventOf map[int]string // row id → event id
	waitFor(t, 60*time.Second, fmt.Sprintf("%d rows in the file", want), func() bool {
		eventOf = eventIDsByRow(t, out)
		return len(eventOf) == want
	})
	if code := p.stop(); code != 0 {
		t.Fatalf("unexpected exit code after SIGTERM; got %d", code)
	}

	// A's events: one transaction committed after B, ordinals 1..n in the order A
	// wrote its rows.
	var order []int
	for id := 100000; id < 100003; id++ {
		order = append(order, id)
	}
	for i := range rows {
		order = append(order, 200000+i)
	}
	for id := 300000; id < 301000; id++ {
		order = append(order, id)
	}
	order = append(order, 100003, 100004)
	bLast := mustLSN(t, lastB)
	var commit lsn.LSN
	for i, id := range order {
		pos := mustPosition(t, eventOf[id])
		if i == 0 {
			commit = pos.Commit
		}
		if pos.Commit != commit || pos.Commit <= bLast {
			t.Fatalf("row %d of A has event %s; want the commit LSN %s of A, after B's %s", id, pos, commit, bLast)
		}
		if pos.Ord != uint32(i+1) {
			t.Fatalf("row %d of A has ordinal %d; want %d (the order A wrote it)", id, pos.Ord, i+1)
		}
	}
}
