package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/fraiseql/fraiseql-observers/internal/pgtest"
	"github.com/fraiseql/fraiseql-observers/lsn"
)

// TestBlockedSinkOutlivesWalSenderTimeout blocks the sink for three times
// wal_sender_timeout: the pipeline fills, the session stops reading but keeps sending
// status updates, so PostgreSQL keeps the session; afterwards everything arrives.
func TestBlockedSinkOutlivesWalSenderTimeout(t *testing.T) {
	db := pgtest.NewDB(t)
	db.Exec(`CREATE TABLE t (id bigint PRIMARY KEY, v int NOT NULL, payload text);
	         CREATE PUBLICATION obs_pub FOR TABLE t`)
	// A FIFO nobody reads: once the pipe buffer is full, every write blocks.
	fifo := filepath.Join(t.TempDir(), "events.fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	dsn := db.DSN() + "&options=" + "-c%20wal_sender_timeout%3D3s"
	cfg := writeConfig(t, fmt.Sprintf(`
source: {dsn: %q, slot: obs_slot, publication: obs_pub, manage_slot: true, status_interval: 1s}
pipeline: {max_in_flight_bytes: 64KiB}
admin: {listen: ""}
observers:
  all:
    entity: t
    actions: [{type: file, path: %q, fsync: never}]
`, dsn, fifo))
	// The option reaches the server (the replication connection sends the same startup options).
	if got := queryDSN[string](t, dsn, "SHOW wal_sender_timeout"); got != "3s" {
		t.Fatalf("unexpected wal_sender_timeout through the DSN; got %q; want 3s", got)
	}
	logStart := len(db.Server.Log())
	p := startService(t, nil, "start", "--config", cfg)
	waitFor(t, 30*time.Second, "the service to stream", func() bool { return slotActive(db, "obs_slot") })
	pid := pgtest.QueryValue[int32](db, "SELECT active_pid FROM pg_replication_slots WHERE slot_name = 'obs_slot'")

	const rows = 3000
	insertBacklog(t, db, 1, rows, 100)
	time.Sleep(10 * time.Second) // > 3 × wal_sender_timeout with the sink blocked
	if p.exited() {
		t.Fatalf("service exited while the sink was blocked")
	}
	if now := pgtest.QueryValue[int32](db, "SELECT coalesce(active_pid, 0) FROM pg_replication_slots WHERE slot_name = 'obs_slot'"); now != pid {
		t.Fatalf("the replication session was replaced while the sink was blocked (walsender pid %d, now %d)", pid, now)
	}
	if log := db.Server.Log()[logStart:]; strings.Contains(log, "replication timeout") {
		t.Fatalf("PostgreSQL ended the walsender for a replication timeout:\n%s", log)
	}
	// Unblock: read the FIFO to a file and check everything arrives.
	out := filepath.Join(t.TempDir(), "events.jsonl")
	go func() {
		r, err := os.Open(fifo)
		if err != nil {
			return
		}
		defer r.Close()
		w, err := os.Create(out)
		if err != nil {
			return
		}
		defer w.Close()
		io.Copy(w, r)
	}()
	waitFor(t, 60*time.Second, "every row after the sink recovered", func() bool { return len(idsInFile(t, out, -1)) == rows })
	p.kill() // the FIFO reader never closes; a graceful stop is tested elsewhere
}

// TestIdleTableConfirmsWhileOtherDatabaseWrites: the published table stays idle while
// another database of the cluster writes; the slot's confirmed position keeps up, so
// the server does not retain WAL for us.
func TestIdleTableConfirmsWhileOtherDatabaseWrites(t *testing.T) {
	db := pgtest.NewDB(t)
	db.Exec(`CREATE TABLE idle (id bigint PRIMARY KEY);
	         CREATE PUBLICATION obs_pub FOR TABLE idle`)
	other := pgtest.NewDB(t)
	other.Exec(`CREATE TABLE noise (id bigserial PRIMARY KEY, payload text)`)
	out := filepath.Join(t.TempDir(), "events.jsonl")
	cfg := writeConfig(t, baseConfig(db, out, ""))
	p := startService(t, nil, "start", "--config", cfg)
	waitFor(t, 30*time.Second, "the service to stream", func() bool { return slotActive(db, "obs_slot") })
	start := confirmedFlush(t, db, "obs_slot")
	ctx := context.Background()
	for i := 0; i < 20; i++ {
		if err := other.Server.Exec(ctx, other.Name, `INSERT INTO noise (payload) SELECT repeat('n', 200) FROM generate_series(1, 2000)`); err != nil {
			t.Fatal(err)
		}
	}
	var wal string
	conn := db.Conn()
	if err := conn.QueryRow(ctx, "SELECT pg_current_wal_lsn()::text").Scan(&wal); err != nil {
		t.Fatal(err)
	}
	target, _ := lsn.Parse(wal)
	waitFor(t, 60*time.Second, fmt.Sprintf("confirmed_flush_lsn to pass %s (it was %s)", target, start), func() bool {
		return confirmedFlush(t, db, "obs_slot") >= target
	})
	if n := len(readEvents(t, out)); n != 0 {
		t.Fatalf("unexpected events from an idle table: %d", n)
	}
	p.stop()
}

// queryDSN runs a one-value query on a fresh connection to dsn.
func queryDSN[T any](t *testing.T, dsn, sql string) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var v T
	if err := conn.QueryRow(ctx, sql).Scan(&v); err != nil {
		t.Fatal(err)
	}
	return v
}

// TestHeartbeats: heartbeat messages go through the stream, are acknowledged by the
// session (the slot confirms past them) and are never delivered as events, not even to
// an observer of every message.
func TestHeartbeats(t *testing.T) {
	db := pgtest.NewDB(t)
	db.Exec(`CREATE TABLE idle (id bigint PRIMARY KEY); CREATE PUBLICATION obs_pub FOR TABLE idle`)
	out := filepath.Join(t.TempDir(), "events.jsonl")
	addr := freeAddr(t)
	cfg := writeConfig(t, fmt.Sprintf(`
source: {dsn: %q, slot: obs_slot, publication: obs_pub, manage_slot: true, status_interval: 1s, heartbeat_interval: 200ms}
checkpoints: {interval: 200ms}
admin: {listen: %q}
observers:
  messages:
    event_type: CUSTOM
    message_prefix: fraiseql-observers.heartbeat
    actions: [{type: file, path: %q}]
`, db.DSN(), addr, out))
	p := startAndWait(t, cfg, addr)
	start := confirmedFlush(t, db, "obs_slot")
	waitFor(t, 30*time.Second, "heartbeats", func() bool {
		return metric(t, scrape(t, addr, ""), "observer_heartbeats_received_total") >= 5
	})
	waitFor(t, 30*time.Second, "the slot to confirm past them", func() bool { return confirmedFlush(t, db, "obs_slot") > start })
	p.stop()
	if n := len(readEvents(t, out)); n != 0 {
		t.Fatalf("heartbeats were delivered as events: %d", n)
	}
}
