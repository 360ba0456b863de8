package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fraiseql/fraiseql-observers/internal/pgtest"
)

// TestHugeTransactionKilledMidDelivery is reliability test R11 (a, d, e) with
// protocol version 1: one transaction of 200k inserts, 50k of them rolled back to a
// savepoint, decoded with logical_decoding_work_mem = 64kB so PostgreSQL spills it to
// disk. The service is killed with SIGKILL in the middle of delivering it and
// restarted: every committed row arrives, with one event id per row, none of the
// rolled-back rows does, and the slot had not confirmed the transaction before the
// kill (else the restart would have skipped it).
func TestHugeTransactionKilledMidDelivery(t *testing.T) {
	db := pgtest.NewDB(t)
	db.Exec(`CREATE TABLE t (id int PRIMARY KEY, v text NOT NULL); CREATE PUBLICATION obs_pub FOR TABLE t`)
	// The service streams through a proxy that passes it at most 1 MB/s of
	// replication data (the transaction is about 8 MB of it), so that the kill lands
	// mid-delivery however fast the service is: unthrottled, it delivered all 150k
	// events between two of the test's polls.
	proxy := pgtest.StartProxy(t, fmt.Sprintf("127.0.0.1:%d", db.Server.Port))
	proxy.Throttle(1 << 20)
	dsn := strings.Replace(db.DSN(), fmt.Sprintf("127.0.0.1:%d", db.Server.Port), proxy.Addr(), 1) +
		"&options=-c%20logical_decoding_work_mem%3D64kB"
	out := filepath.Join(t.TempDir(), "events.jsonl")
	cfg := writeConfig(t, fmt.Sprintf(`
source: {dsn: %q, slot: obs_slot, publication: obs_pub, manage_slot: true, status_interval: 1s}
checkpoints: {enabled: true, interval: 200ms}
pipeline: {max_in_flight_bytes: 4MiB}
admin: {listen: ""}
observers:
  all:
    entity: t
    actions: [{type: file, path: %q, fsync: never}]
`, dsn, out))
	p := startService(t, nil, "start", "--config", cfg)
	waitFor(t, 30*time.Second, "the service to stream", func() bool { return slotActive(db, "obs_slot") })

	db.Exec(`BEGIN;
	         INSERT INTO t SELECT g, 'row ' || g FROM generate_series(1, 100000) g;
	         SAVEPOINT s;
	         INSERT INTO t SELECT g, 'rolled back' FROM generate_series(100001, 150000) g;
	         ROLLBACK TO SAVEPOINT s;
	         INSERT INTO t SELECT g, 'row ' || g FROM generate_series(150001, 200000) g;
	         COMMIT`)
	const want = 150000
	waitFor(t, 120*time.Second, "the delivery to be under way", func() bool { return lineCount(t, out) >= 20000 })
	p.kill()
	delivered := len(readEvents(t, out))
	t.Logf("killed with %d of %d events delivered", delivered, want)
	if delivered >= want {
		t.Fatalf("the whole transaction (%d events) was delivered before the kill; the test needs it killed mid-way", delivered)
	}
	// While PostgreSQL decodes the spilled transaction, its keepalives report positions
	// inside it, and an idle consumer may confirm those: that is safe, as PostgreSQL
	// skips a transaction only when its commit lies below confirmed_flush_lsn. What must
	// not happen is a confirmation past the commit; it is checked once the commit LSN is
	// known from the events.
	confirmedAtKill := mustLSN(t, pgtest.QueryValue[string](db, `SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = 'obs_slot'`))
	if spilled := pgtest.QueryValue[int64](db, `SELECT spill_txns FROM pg_stat_replication_slots WHERE slot_name = 'obs_slot'`); spilled == 0 {
		t.Fatal("PostgreSQL did not spill the transaction to disk: the test does not exercise the path it is for")
	}

	proxy.Throttle(0) // the restart may stream at full speed
	p = startService(t, nil, "start", "--config", cfg)
	var eventOf map[int]string // row id → event id
	waitFor(t, 180*time.Second, fmt.Sprintf("%d distinct rows", want), func() bool {
		if lineCount(t, out) < want { // parse the file only when it can be complete
			return false
		}
		eventOf = eventIDsByRow(t, out)
		return len(eventOf) == want
	})
	if code := p.stop(); code != 0 {
		t.Fatalf("unexpected exit code after SIGTERM; got %d", code)
	}
	for id := 100001; id <= 150000; id++ {
		if _, ok := eventOf[id]; ok {
			t.Fatalf("row %d, rolled back to a savepoint, was delivered", id)
		}
	}
	// One transaction: one commit LSN, ordinals 1..150000 in the order of the rows.
	first := mustPosition(t, eventOf[1])
	if confirmedAtKill.Compare(first.Commit) > 0 {
		t.Fatalf("the slot confirmed %s, past the transaction's commit %s, while it was %d/%d delivered", confirmedAtKill, first.Commit, delivered, want)
	}
	for id, eid := range eventOf {
		pos := mustPosition(t, eid)
		wantOrd := uint32(id)
		if id > 150000 {
			wantOrd = uint32(id - 50000)
		}
		if pos.Commit != first.Commit || pos.Ord != wantOrd {
			t.Fatalf("row %d has event id %s; want %s:%d", id, eid, first.Commit, wantOrd)
		}
	}
}

// lineCount counts the complete lines of a file; a missing file has none.
func lineCount(t *testing.T, path string) int {
	t.Helper()
	data, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Count(data, []byte("\n"))
}
