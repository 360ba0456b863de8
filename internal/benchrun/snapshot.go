package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/fraiseql/fraiseql-observers/internal/pgtest"
)

// snapshotBench measures a backfill: the rows of a table (the catch-up benchmark's
// rows, filled before the slot exists) read by the service with snapshot.mode initial
// and written by the file action, next to COPY (SELECT * FROM the table) TO STDOUT
// read by a client in the same run: how fast PostgreSQL hands the same rows out, the
// limit of any reader.
func snapshotBench(ctx context.Context, srv *pgtest.Server, bin string, rows int) error {
	db, err := backlog(ctx, srv, "bench_snapshot", rows, 10_000) // no slot: nothing streams
	if err != nil {
		return err
	}
	defer srv.DropDatabase(ctx, db)
	conn, err := srv.Connect(ctx, db)
	if err != nil {
		return err
	}
	if _, err := conn.Exec(ctx, "VACUUM ANALYZE events"); err != nil {
		conn.Close(ctx)
		return err
	}
	start := time.Now()
	tag, err := conn.PgConn().CopyTo(ctx, io.Discard, "COPY (SELECT * FROM events) TO STDOUT")
	copyDur := time.Since(start)
	conn.Close(ctx)
	if err != nil {
		return fmt.Errorf("copy: %w", err)
	}
	if tag.RowsAffected() != int64(rows) {
		return fmt.Errorf("copy: %d rows, want %d", tag.RowsAffected(), rows)
	}

	dir, err := os.MkdirTemp("", "benchrun")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	out := filepath.Join(dir, "events.jsonl")
	cfg := fmt.Sprintf(`
source: {dsn: %q, slot: snap_slot, publication: pub, manage_slot: true, status_interval: 1s}
checkpoints: {interval: 1s}
admin: {listen: ""}
logging: {level: warn}
snapshot: {mode: initial}
observers:
  all:
    entity: events
    event_type: READ
    actions: [{type: file, path: %q}]
`, srv.DSN(db), out)
	counter := &lineCounter{paths: []string{out}}
	ours, err := runService(ctx, bin, dir, cfg, func() (int, error) { return counter.count() }, rows, nil)
	if err != nil {
		return err
	}
	fmt.Printf("## Snapshot (backfill) of a %d-row table\n\n", rows)
	fmt.Println("| reader | time | rows/s | peak RSS |")
	fmt.Println("|---|---|---|---|")
	fmt.Printf("| COPY (SELECT * FROM events) TO STDOUT, read by a client (the read limit) | %.1f s | %.0f | — |\n", copyDur.Seconds(), float64(rows)/copyDur.Seconds())
	fmt.Printf("| fraiseql-observers snapshot (chunks of 1024, watermarks) → file sink | %.1f s | %.0f | %d MiB |\n",
		ours.dur.Seconds(), float64(rows)/ours.dur.Seconds(), ours.maxRSS/1024)
	fmt.Printf("\nRatio (snapshot rows/s ÷ COPY rows/s): **%.2f**. The service's time includes its start and the slot's creation.\n\n",
		copyDur.Seconds()/ours.dur.Seconds())
	return nil
}
