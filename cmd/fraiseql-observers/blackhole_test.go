package main

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fraiseql/fraiseql-observers/internal/pgtest"
)

// TestReplicationNetworkFaults is reliability test R4 (b, d) through a proxy.
//
// Blackhole: the network starts dropping every packet of the replication
// connection, without closing it. The service notices the silence after
// receive_timeout, replaces the connection, waits out the old walsender (which
// PostgreSQL ends after wal_sender_timeout) and streams again.
//
// Status updates lost: only the packets from the service to PostgreSQL are dropped.
// PostgreSQL ends the walsender after wal_sender_timeout without replies; the service
// sees the connection end, reconnects and streams again.
//
// Either way nothing is lost.
func TestReplicationNetworkFaults(t *testing.T) {
	t.Run("blackhole", func(t *testing.T) { replicationFault(t, true, true) })
	t.Run("status updates lost", func(t *testing.T) {
		log := replicationFault(t, true, false)
		if !strings.Contains(log, "terminating walsender process due to replication timeout") {
			t.Fatalf("PostgreSQL did not end the walsender for want of status updates:\n%s", log)
		}
	})
}

// replicationFault streams 100 rows, freezes the replication connection in the
// directions given, and checks that the service streams again on a new connection
// and delivers every row. It returns what PostgreSQL logged after the freeze.
func replicationFault(t *testing.T, toServer, toClient bool) string {
	db := pgtest.NewDB(t)
	db.Exec(`CREATE TABLE t (id int PRIMARY KEY); CREATE PUBLICATION obs_pub FOR TABLE t`)
	proxy := pgtest.StartProxy(t, fmt.Sprintf("127.0.0.1:%d", db.Server.Port))
	dsn := fmt.Sprintf("postgres://postgres@%s/%s?sslmode=disable&options=-c%%20wal_sender_timeout%%3D4s", proxy.Addr(), db.Name)
	out := filepath.Join(t.TempDir(), "events.jsonl")
	cfg := writeConfig(t, fmt.Sprintf(`
source: {dsn: %q, slot: obs_slot, publication: obs_pub, manage_slot: true, status_interval: 1s, receive_timeout: 3s,
         reconnect: {initial_delay: 200ms, max_delay: 1s}}
admin: {listen: ""}
observers:
  all:
    entity: t
    actions: [{type: file, path: %q}]
`, dsn, out))
	p := startService(t, nil, "start", "--config", cfg)
	waitFor(t, 30*time.Second, "the service to stream", func() bool { return slotActive(db, "obs_slot") })
	db.Exec(`INSERT INTO t SELECT g FROM generate_series(1, 100) g`)
	waitFor(t, 30*time.Second, "the first 100 events", func() bool { return len(readEvents(t, out)) == 100 })
	// Read the streaming walsender's pid only now: the slot is also active, briefly,
	// while the connection that created it holds it, so an earlier read can see
	// that walsender or, between the two, none (active_pid NULL).
	var oldPID int32
	waitFor(t, 30*time.Second, "the streaming walsender's pid", func() bool {
		oldPID = pgtest.QueryValue[int32](db, `SELECT coalesce(active_pid, 0) FROM pg_replication_slots WHERE slot_name = 'obs_slot'`)
		return oldPID != 0
	})

	logStart := len(db.Server.Log())
	if n := proxy.FreezeReplication(toServer, toClient); n == 0 { // the streaming one, and the one that created the slot
		t.Fatal("no replication connection went through the proxy")
	}
	db.Exec(`INSERT INTO t SELECT g FROM generate_series(101, 200) g`)
	waitFor(t, 60*time.Second, "the service to stream on a new connection", func() bool {
		pid := pgtest.QueryValue[int32](db, `SELECT coalesce(active_pid, 0) FROM pg_replication_slots WHERE slot_name = 'obs_slot'`)
		return pid != 0 && pid != oldPID
	})
	db.Exec(`INSERT INTO t SELECT g FROM generate_series(201, 300) g`)
	waitFor(t, 60*time.Second, "all 300 rows", func() bool {
		seen := map[string]bool{}
		for _, ev := range readEvents(t, out) {
			seen[string(ev.New["id"])] = true
		}
		return len(seen) == 300
	})
	if code := p.stop(); code != 0 {
		t.Fatalf("unexpected exit code %d", code)
	}
	if toClient && !strings.Contains(p.output(), "no message from the server for") {
		t.Fatalf("the service did not report the silent connection:\n%s", p.output())
	}
	return db.Server.Log()[logStart:]
}
