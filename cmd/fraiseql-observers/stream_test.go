package main

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"math/rand/v2"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/fraiseql/fraiseql-observers/decoder"
	"github.com/fraiseql/fraiseql-observers/internal/pgtest"
	"github.com/fraiseql/fraiseql-observers/lsn"
)

// model is the test's own account of a workload: every change it committed, in order.
type change struct {
	table string
	op    string
	id    int
	v     int // value after (INSERT, UPDATE) or before (DELETE)
	oldV  int
}

// TestFileExactlyOnceInCommitOrder runs many transactions of inserts, updates, deletes
// and truncates and checks that the file receives each change exactly once, in commit
// order, with the right images and stable ids: with concurrent_execution off, and with
// it on and the action ordered.
func TestFileExactlyOnceInCommitOrder(t *testing.T) {
	t.Run("concurrent_execution off", func(t *testing.T) {
		fileInCommitOrder(t, func(db *pgtest.DB, out string) string {
			return baseConfig(db, out, "concurrent_execution: {enabled: false}")
		})
	})
	t.Run("ordered action", func(t *testing.T) {
		fileInCommitOrder(t, func(db *pgtest.DB, out string) string {
			return opsConfig(db, "", "", "concurrent_execution: {max_concurrency: 8}", fmt.Sprintf(`  everything:
    entity: "*"
    event_type: [INSERT, UPDATE, DELETE, TRUNCATE]
    actions:
      - {type: file, name: out, path: %q, ordered: true}
`, out))
		})
	})
}

func fileInCommitOrder(t *testing.T, config func(db *pgtest.DB, out string) string) {
	db := pgtest.NewDB(t)
	db.Exec(`CREATE TABLE t_a (id int PRIMARY KEY, v int NOT NULL, payload text);
	         CREATE TABLE t_b (id int PRIMARY KEY, v int NOT NULL);
	         ALTER TABLE t_b REPLICA IDENTITY FULL;
	         CREATE PUBLICATION obs_pub FOR TABLE t_a, t_b`)
	out := filepath.Join(t.TempDir(), "events.jsonl")
	cfg := writeConfig(t, config(db, out))
	p := startService(t, nil, "start", "--config", cfg)
	waitFor(t, 30*time.Second, "the service to stream", func() bool { return slotActive(db, "obs_slot") })
	db.CreateSlot("oracle")

	conn := db.Conn()
	ctx := context.Background()
	r := rand.New(rand.NewPCG(7, 7))
	var want []change
	live := map[string]map[int]int{"t_a": {}, "t_b": {}}
	for tx := 0; tx < 200; tx++ {
		batch, err := conn.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var pending []change
		saved := map[string]map[int]int{}
		for table, rows := range live {
			saved[table] = maps.Clone(rows)
		}
		for i := 0; i < 1+r.IntN(8); i++ {
			table := []string{"t_a", "t_b"}[r.IntN(2)]
			rows := live[table]
			id := r.IntN(40)
			switch old, exists := rows[id]; {
			case !exists:
				v := r.IntN(1000)
				execTx(t, batch, fmt.Sprintf("INSERT INTO %s (id, v) VALUES ($1, $2)", table), id, v)
				rows[id] = v
				pending = append(pending, change{table: table, op: "INSERT", id: id, v: v})
			case r.IntN(3) == 0:
				execTx(t, batch, fmt.Sprintf("DELETE FROM %s WHERE id = $1", table), id)
				delete(rows, id)
				pending = append(pending, change{table: table, op: "DELETE", id: id, v: old})
			default:
				execTx(t, batch, fmt.Sprintf("UPDATE %s SET v = v + 1 WHERE id = $1", table), id)
				rows[id] = old + 1
				pending = append(pending, change{table: table, op: "UPDATE", id: id, v: old + 1, oldV: old})
			}
		}
		if tx%50 == 49 {
			execTx(t, batch, "TRUNCATE t_a, t_b")
			live = map[string]map[int]int{"t_a": {}, "t_b": {}}
			pending = append(pending, change{table: "t_a", op: "TRUNCATE"}, change{table: "t_b", op: "TRUNCATE"})
		}
		if r.IntN(10) == 0 { // a rolled-back transaction must leave no trace
			batch.Rollback(ctx)
			live = saved
			continue
		}
		if err := batch.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		want = append(want, pending...)
	}
	waitFor(t, 60*time.Second, fmt.Sprintf("%d events in the file", len(want)), func() bool { return len(readEvents(t, out)) >= len(want) })
	if code := p.stop(); code != 0 {
		t.Fatalf("unexpected exit code after SIGTERM; got %d; want 0", code)
	}
	got := readEvents(t, out)
	if len(got) != len(want) {
		t.Fatalf("unexpected number of events; got %d; want %d", len(got), len(want))
	}
	var prev lsn.Position
	for i, ev := range got {
		w := want[i]
		id, err := lsn.ParsePosition(ev.ID)
		if err != nil {
			t.Fatalf("event %d: bad id %q: %v", i, ev.ID, err)
		}
		if i > 0 && id.Compare(prev) <= 0 {
			t.Fatalf("event %d (%s) is not after event %d (%s): not in commit order", i, ev.ID, i-1, prev)
		}
		prev = id
		if ev.Table != w.table || ev.Op != w.op {
			t.Fatalf("event %d: unexpected change; got %s %s; want %s %s\n%s", i, ev.Op, ev.Table, w.op, w.table, ev.raw)
		}
		switch w.op {
		case "INSERT":
			checkInt(t, i, "new.v", ev.New["v"], w.v)
			checkInt(t, i, "new.id", ev.New["id"], w.id)
		case "UPDATE":
			checkInt(t, i, "new.v", ev.New["v"], w.v)
			if w.table == "t_b" { // REPLICA IDENTITY FULL: the old image is complete
				checkInt(t, i, "old.v", ev.Old["v"], w.oldV)
				if ev.OldKind != "full" {
					t.Fatalf("event %d: unexpected old_kind %q; want full", i, ev.OldKind)
				}
			}
		case "DELETE":
			checkInt(t, i, "key.id", ev.Key["id"], w.id)
		}
	}
	// Stable ids: a second, independent decoding of the same WAL yields the same ids.
	checkIDsAgainstOracle(t, db, got)
}

func execTx(t *testing.T, tx pgx.Tx, sql string, args ...any) {
	t.Helper()
	if _, err := tx.Exec(context.Background(), sql, args...); err != nil {
		t.Fatalf("exec %q: %v", sql, err)
	}
}

// checkIDsAgainstOracle decodes the same WAL again through an independent slot
// (created before the workload) and checks the delivered ids are the ones it yields.
func checkIDsAgainstOracle(t *testing.T, db *pgtest.DB, got []fileEvent) {
	t.Helper()
	ctx := context.Background()
	conn := db.Conn()
	rows, err := conn.Query(ctx, `SELECT lsn::text, data FROM pg_logical_slot_get_binary_changes('oracle', NULL, NULL,
		'proto_version', '1', 'publication_names', 'obs_pub')`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	dec := decoder.New(decoder.Options{})
	var ids []string
	var evs []*decoder.Event
	for rows.Next() {
		var at string
		var data []byte
		if err := rows.Scan(&at, &data); err != nil {
			t.Fatal(err)
		}
		l, _ := lsn.Parse(at)
		evs, _, err = dec.Decode(l, data, evs[:0])
		if err != nil {
			t.Fatal(err)
		}
		for _, ev := range evs {
			ids = append(ids, ev.ID.String())
		}
	}
	if len(ids) != len(got) {
		t.Fatalf("oracle decoded %d events; the file holds %d", len(ids), len(got))
	}
	for i := range ids {
		if ids[i] != got[i].ID {
			t.Fatalf("event %d: id %s in the file, %s from the oracle slot", i, got[i].ID, ids[i])
		}
	}
}

func checkInt(t *testing.T, i int, what string, raw json.RawMessage, want int) {
	t.Helper()
	got, err := strconv.Atoi(string(raw))
	if err != nil || got != want {
		t.Fatalf("event %d: unexpected %s; got %s; want %d", i, what, raw, want)
	}
}
