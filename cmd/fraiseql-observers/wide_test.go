package main

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fraiseql/fraiseql-observers/internal/pgtest"
)

// TestWideTable is reliability test B6's widest case: a table with PostgreSQL's
// maximum of 1600 columns, 1599 of them NULL, arrives with every column under its
// exact name, through INSERT, UPDATE (REPLICA IDENTITY FULL) and DELETE.
func TestWideTable(t *testing.T) {
	db := pgtest.NewDB(t)
	cols := make([]string, 1600)
	cols[0] = `"id" int PRIMARY KEY`
	for i := 1; i < len(cols); i++ {
		cols[i] = fmt.Sprintf(`"c%04d" int`, i)
	}
	db.Exec(`CREATE TABLE wide (` + strings.Join(cols, ", ") + `); ALTER TABLE wide REPLICA IDENTITY FULL; CREATE PUBLICATION obs_pub FOR TABLE wide`)
	out := filepath.Join(t.TempDir(), "events.jsonl")
	p := startService(t, nil, "start", "--config", writeConfig(t, baseConfig(db, out, "")))
	waitFor(t, 30*time.Second, "the service to stream", func() bool { return slotActive(db, "obs_slot") })
	db.Exec(`INSERT INTO wide (id, c1599) VALUES (1, 42)`)
	db.Exec(`UPDATE wide SET c0800 = 7 WHERE id = 1`)
	db.Exec(`DELETE FROM wide WHERE id = 1`)
	waitFor(t, 30*time.Second, "3 events", func() bool { return len(readEvents(t, out)) >= 3 })
	if code := p.stop(); code != 0 {
		t.Fatalf("unexpected exit code %d", code)
	}
	evs := readEvents(t, out)
	check := func(what string, row map[string]json.RawMessage, set map[string]string) {
		t.Helper()
		if len(row) != 1600 {
			t.Fatalf("%s: unexpected number of columns; got %d; want 1600", what, len(row))
		}
		for i := 1; i < 1600; i++ {
			name := fmt.Sprintf("c%04d", i)
			want, ok := set[name]
			if !ok {
				want = "null"
			}
			if got, ok := row[name]; !ok || string(got) != want {
				t.Fatalf("%s: column %s is %q; want %s", what, name, got, want)
			}
		}
	}
	check("INSERT new", evs[0].New, map[string]string{"c1599": "42"})
	check("UPDATE old", evs[1].Old, map[string]string{"c1599": "42"})
	check("UPDATE new", evs[1].New, map[string]string{"c1599": "42", "c0800": "7"})
	check("DELETE old", evs[2].Old, map[string]string{"c1599": "42", "c0800": "7"})
}
