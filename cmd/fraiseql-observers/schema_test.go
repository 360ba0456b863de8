package main

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fraiseql/fraiseql-observers/internal/pgtest"
)

// TestSchemaChangesMidStream is reliability test R16's schema part: while the
// service streams, the table gains a column with a default, has one renamed, one
// widened from int to bigint, one dropped, its replica identity changed, and is
// finally dropped and created again under the same name (a new OID) and truncated.
// Each event carries the columns in force at its commit, values stay exact, and the
// observer, keyed by name, keeps matching the re-created table.
func TestSchemaChangesMidStream(t *testing.T) {
	db := pgtest.NewDB(t)
	db.Exec(`CREATE TABLE t (id int PRIMARY KEY, a int); CREATE PUBLICATION obs_pub FOR TABLE t`)
	out := filepath.Join(t.TempDir(), "events.jsonl")
	cfg := writeConfig(t, opsConfig(db, "", "", "", fmt.Sprintf(`  all:
    entity: t
    event_type: [INSERT, UPDATE, DELETE, TRUNCATE]
    actions: [{type: file, path: %q, ordered: true}]
`, out)))
	p := startService(t, nil, "start", "--config", cfg)
	waitFor(t, 30*time.Second, "the service to stream", func() bool { return slotActive(db, "obs_slot") })

	steps := []struct{ sql, want string }{
		{`INSERT INTO t VALUES (1, 10)`, `INSERT new={"id":1,"a":10}`},
		{`ALTER TABLE t ADD COLUMN b text DEFAULT 'x'; INSERT INTO t VALUES (2, 20)`, `INSERT new={"id":2,"a":20,"b":"x"}`},
		{`UPDATE t SET a = 11 WHERE id = 1`, `UPDATE new={"id":1,"a":11,"b":"x"}`},
		{`ALTER TABLE t RENAME COLUMN a TO a2; INSERT INTO t VALUES (3, 30, 'y')`, `INSERT new={"id":3,"a2":30,"b":"y"}`},
		{`ALTER TABLE t ALTER COLUMN a2 TYPE bigint; INSERT INTO t VALUES (4, 9007199254740993, 'z')`, `INSERT new={"id":4,"a2":9007199254740993,"b":"z"}`},
		{`ALTER TABLE t DROP COLUMN b; INSERT INTO t VALUES (5, 50)`, `INSERT new={"id":5,"a2":50}`},
		{`ALTER TABLE t REPLICA IDENTITY FULL; UPDATE t SET a2 = 51 WHERE id = 5`, `UPDATE new={"id":5,"a2":51} old={"id":5,"a2":50}`},
		{`DELETE FROM t WHERE id = 2`, `DELETE old={"id":2,"a2":20}`},
		{`DROP TABLE t; CREATE TABLE t (id int PRIMARY KEY, c text); ALTER PUBLICATION obs_pub ADD TABLE t; INSERT INTO t VALUES (6, 'new')`, `INSERT new={"id":6,"c":"new"}`},
		{`TRUNCATE t`, `TRUNCATE`},
	}
	for _, s := range steps {
		db.Exec(s.sql)
	}
	waitFor(t, 30*time.Second, fmt.Sprintf("%d events", len(steps)), func() bool { return len(readEvents(t, out)) >= len(steps) })
	if code := p.stop(); code != 0 {
		t.Fatalf("unexpected exit code %d", code)
	}
	evs := readEvents(t, out)
	if len(evs) != len(steps) {
		t.Fatalf("unexpected number of events; got %d; want %d", len(evs), len(steps))
	}
	for i, ev := range evs {
		got := ev.Op
		if ev.New != nil {
			got += " new=" + compactRow(t, ev.raw, "new")
		}
		if ev.Op != "INSERT" && ev.Old != nil {
			got += " old=" + compactRow(t, ev.raw, "old")
		}
		if ev.Table != "t" || got != steps[i].want {
			t.Fatalf("step %d (%s): unexpected event;\ngot  %s %s\nwant t %s", i, steps[i].sql, ev.Table, got, steps[i].want)
		}
	}
}

// compactRow returns the JSON of one row object of an event line, as written.
func compactRow(t *testing.T, raw, field string) string {
	t.Helper()
	i := strings.Index(raw, `"`+field+`":{`)
	if i < 0 {
		t.Fatalf("event has no %s object: %s", field, raw)
	}
	rest := raw[i+len(field)+3:]
	return rest[:strings.Index(rest, "}")+1]
}
