package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fraiseql/fraiseql-observers/internal/pgtest"
)

// readsByRow returns, per row id, the event ids of the READ events in a file sink.
func readsByRow(t *testing.T, path string) map[int][]string {
	t.Helper()
	out := map[int][]string{}
	for _, ev := range readEvents(t, path) {
		if ev.Op != "READ" {
			continue
		}
		id, err := strconv.Atoi(string(ev.New["id"]))
		if err != nil {
			t.Fatalf("READ event without a numeric id: %s", ev.raw)
		}
		out[id] = append(out[id], ev.ID)
	}
	return out
}

const ordersDDL = `CREATE TABLE orders (id bigint PRIMARY KEY, status text NOT NULL, total numeric(12,2) NOT NULL);
CREATE PUBLICATION obs_pub FOR TABLE orders;`

func readObserver(out string) string {
	return fmt.Sprintf(`  orders:
    entity: public.orders
    event_type: [INSERT, UPDATE, DELETE, READ]
    actions:
      - {type: file, path: %q}
`, out)
}

// TestSnapshotInitialOnFreshSlot starts the service with snapshot.mode initial on a
// new slot: every row the table held arrives once as READ, then the live changes; a
// restart does not read the table again.
func TestSnapshotInitialOnFreshSlot(t *testing.T) {
	db := pgtest.NewDB(t)
	db.Exec(ordersDDL + `INSERT INTO orders SELECT g, 'new', g * 1.5 FROM generate_series(1, 2000) g;`)
	out := filepath.Join(t.TempDir(), "orders.jsonl")
	addr := freeAddr(t)
	cfg := writeConfig(t, opsConfig(db, addr, "", "snapshot: {mode: initial, chunk_size: 300}", readObserver(out)))
	p := startAndWait(t, cfg, addr)
	waitFor(t, 2*time.Minute, "2000 READ events", func() bool { return len(readsByRow(t, out)) == 2000 })
	db.Exec(`UPDATE orders SET status = 'shipped' WHERE id = 5; INSERT INTO orders VALUES (5000, 'new', 1)`)
	waitFor(t, time.Minute, "the live changes", func() bool { return len(readEvents(t, out)) == 2002 })
	evs := readEvents(t, out)
	if evs[2000].Op != "UPDATE" || evs[2001].Op != "INSERT" {
		t.Fatalf("unexpected events after the snapshot: %s, %s", evs[2000].raw, evs[2001].raw)
	}
	for id, ids := range readsByRow(t, out) {
		if len(ids) != 1 || id < 1 || id > 2000 {
			t.Fatalf("row %d read %d times", id, len(ids))
		}
	}
	m := scrape(t, addr, "")
	if got := metric(t, m, `observer_snapshot_rows_total{table="public.orders"}`); got != 2000 {
		t.Fatalf("unexpected observer_snapshot_rows_total; got %v; want 2000", got)
	}
	if got := metric(t, m, `observer_snapshot_chunks_total{table="public.orders"}`); got != 7 {
		t.Fatalf("unexpected observer_snapshot_chunks_total; got %v; want 7", got)
	}
	if got := metric(t, m, `observer_snapshot_remaining_rows{table="public.orders"}`); got != 0 {
		t.Fatalf("unexpected observer_snapshot_remaining_rows; got %v; want 0", got)
	}
	var infos []struct {
		ID       int64  `json:"id"`
		State    string `json:"state"`
		Origin   string `json:"origin"`
		RowsRead int64  `json:"rows_read"`
		RowsSent int64  `json:"rows_sent"`
	}
	cliJSON(t, nil, &infos, "snapshot", "status", "--config", cfg)
	if len(infos) != 1 || infos[0].State != "done" || infos[0].Origin != "initial" || infos[0].RowsRead != 2000 || infos[0].RowsSent != 2000 {
		t.Fatalf("unexpected snapshots: %+v", infos)
	}
	if code := p.stop(); code != 0 {
		t.Fatalf("unexpected exit code %d", code)
	}
	p = startAndWait(t, cfg, addr)
	db.Exec(`UPDATE orders SET status = 'paid' WHERE id = 6`)
	waitFor(t, time.Minute, "the change after the restart", func() bool { return len(readEvents(t, out)) >= 2003 })
	time.Sleep(500 * time.Millisecond) // a second snapshot, if any, would have begun
	if n := len(readEvents(t, out)); n != 2003 {
		t.Fatalf("the restart delivered more than the one change: %d events", n)
	}
	p.stop()
}

// TestSnapshotSIGKILLResumes kills the service in the middle of a backfill: after a
// restart the snapshot resumes after its last completed chunk, every row arrives at
// least once, the rows of completed chunks exactly once, and a row delivered twice
// carries the same event id. A second action (a webhook refusing rows after 2500)
// keeps the chunks after the fifth from completing while the file action has their
// rows, so the kill always finds delivered rows of uncompleted chunks.
func TestSnapshotSIGKILLResumes(t *testing.T) {
	db := pgtest.NewDB(t)
	db.Exec(ordersDDL + `INSERT INTO orders SELECT g, 'new', g FROM generate_series(1, 20000) g;`)
	out := filepath.Join(t.TempDir(), "orders.jsonl")
	hook := newReceiver(t)
	var refuse atomic.Bool
	refuse.Store(true)
	hook.answer = func(id, _ int) (int, string) {
		if refuse.Load() && id > 2500 {
			return http.StatusServiceUnavailable, ""
		}
		return http.StatusOK, ""
	}
	addr := freeAddr(t)
	observer := fmt.Sprintf(`  orders:
    entity: public.orders
    event_type: [INSERT, UPDATE, DELETE, READ]
    retry: {max_attempts: 1000, backoff_strategy: fixed, initial_delay: 100ms, max_delay: 100ms}
    actions:
      - {type: file, path: %q}
      - {type: webhook, url: %q, allow_private_networks: true}
`, out, hook.srv.URL)
	cfg := writeConfig(t, opsConfig(db, addr, "", "snapshot: {chunk_size: 500, rows_per_second: 20000}", observer))
	p := startAndWait(t, cfg, addr)
	expectCLI(t, nil, 0, []string{"Snapshot 1 of public.orders pending"}, "snapshot", "--table", "public.orders", "--detach", "--config", cfg)
	var doc struct {
		Snapshots []struct {
			ID    int64  `json:"id"`
			State string `json:"state"`
		} `json:"snapshots"`
	}
	waitFor(t, time.Minute, "a running snapshot in /status", func() bool {
		cliJSON(t, nil, &doc, "status", "--config", cfg)
		return len(doc.Snapshots) == 1 && doc.Snapshots[0].State == "running"
	})
	waitFor(t, time.Minute, "five completed chunks and rows of the sixth in the file", func() bool {
		return pgtest.QueryValue[int64](db, `SELECT chunks FROM observer_snapshots WHERE id = 1`) == 5 && len(readsByRow(t, out)) >= 3000
	})
	p.kill()
	if n := pgtest.QueryValue[int64](db, `SELECT chunks FROM observer_snapshots WHERE id = 1`); n != 5 {
		t.Fatalf("unexpected completed chunks at the kill: %d; want 5", n)
	}
	before := len(readsByRow(t, out))

	refuse.Store(false)
	p = startAndWait(t, cfg, addr)
	waitFor(t, 2*time.Minute, "the snapshot to finish", func() bool {
		return pgtest.QueryValue[string](db, `SELECT state FROM observer_snapshots WHERE id = 1`) == "done"
	})
	p.stop()
	reads := readsByRow(t, out)
	eventIDsByRow(t, out) // fails on a row delivered under two ids
	twice := 0
	for id := 1; id <= 20000; id++ {
		switch n := len(reads[id]); {
		case n == 0:
			t.Fatalf("row %d was never delivered", id)
		case n > 1 && id <= 2500:
			t.Fatalf("row %d of a chunk completed before the kill was delivered %d times", id, n)
		case n > 1:
			twice++
		}
	}
	if twice < 500 {
		t.Fatalf("only %d rows delivered twice: the rows of the chunks in flight (from 2501) should be", twice)
	}
	t.Logf("killed with 5 chunks completed and %d rows in the file; %d rows delivered twice, with the same ids", before, twice)
}

// TestSnapshotCommandErrors checks the requests the service refuses with a clear
// error, starting nothing, and a backfill of part of a table followed to its end.
func TestSnapshotCommandErrors(t *testing.T) {
	db := pgtest.NewDB(t)
	db.Exec(ordersDDL + `CREATE TABLE nokey (a int, b text); CREATE TABLE hidden (id int PRIMARY KEY);
	ALTER PUBLICATION obs_pub ADD TABLE nokey;
	INSERT INTO orders SELECT g, 'new', g FROM generate_series(1, 300) g;`)
	out := filepath.Join(t.TempDir(), "orders.jsonl")
	addr := freeAddr(t)
	cfg := writeConfig(t, opsConfig(db, addr, "", "", readObserver(out)))
	p := startAndWait(t, cfg, addr)
	cases := []struct{ args, want []string }{
		{[]string{"--table", "public.nokey"}, []string{"public.nokey has no primary key and no unique index over NOT NULL columns"}},
		{[]string{"--table", "public.hidden"}, []string{"public.hidden is not in publication obs_pub"}},
		{[]string{"--table", "public.orders", "--where", "1=1); DROP TABLE orders; --"}, []string{"--where: unbalanced parentheses"}},
		{[]string{"--table", "public.orders", "--where", "true; DROP TABLE orders"}, []string{"--where: a semicolon is not allowed"}},
		{[]string{"--table", "public.orders", "--where", "nosuch > 1"}, []string{`--where: column "nosuch" does not exist`}},
		{[]string{"--table", "public.orders", "--observer", "nobody"}, []string{`--observer: no observer named "nobody"`}},
	}
	for _, c := range cases {
		r := cli(t, nil, append([]string{"snapshot", "--config", cfg}, c.args...)...)
		if r.code != exitConfig {
			t.Fatalf("%v: unexpected exit code %d; want %d\n%s%s", c.args, r.code, exitConfig, r.stdout, r.stderr)
		}
		for _, w := range c.want {
			if !strings.Contains(r.stderr, w) {
				t.Fatalf("%v: stderr lacks %q:\n%s", c.args, w, r.stderr)
			}
		}
	}
	expectCLI(t, nil, 0, []string{"No snapshots."}, "snapshot", "status", "--config", cfg)
	if n := pgtest.QueryValue[int64](db, `SELECT count(*) FROM orders`); n != 300 {
		t.Fatalf("orders lost rows: %d", n)
	}
	// A backfill of part of the table, followed to its end (plain lines: no terminal).
	r := expectCLI(t, nil, 0, []string{"Snapshot 1 of public.orders requested", "Snapshot 1 of public.orders where id % 2 = 0: done, 150 rows read in 1 chunk, 150 delivered as READ"},
		"snapshot", "--table", "public.orders", "--where", "id % 2 = 0", "--config", cfg)
	if strings.Contains(r.stdout, "\r") {
		t.Fatalf("progress bar written to a non-terminal:\n%q", r.stdout)
	}
	waitFor(t, time.Minute, "150 READ events", func() bool { return len(readsByRow(t, out)) == 150 })
	expectCLI(t, nil, exitConfig, nil, "snapshot", "cancel", "7", "--config", cfg)
	expectCLI(t, nil, 0, []string{"1 of public.orders where id % 2 = 0: done"}, "snapshot", "cancel", "1", "--config", cfg)
	p.stop()
	os.Remove(out)
	if r := cli(t, nil, "snapshot", "status", "--config", cfg); r.code != exitUnavailable {
		t.Fatalf("snapshot status without the service: unexpected exit code %d; want %d", r.code, exitUnavailable)
	}
	_ = json.Valid
}
