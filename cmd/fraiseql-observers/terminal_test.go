package main

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"

	"github.com/fraiseql/fraiseql-observers/dlq"
	"github.com/fraiseql/fraiseql-observers/internal/pgtest"
	"github.com/fraiseql/fraiseql-observers/pipeline"
)

// rawControl returns the first character of s that a terminal would act on (a C0
// control other than newline and tab, DEL, a C1 control, a bidirectional
// formatting character), or "" when there is none.
func rawControl(s string) string {
	for _, r := range s {
		if r != '\n' && r != '\t' && needsEscape(r) || r == utf8.RuneError {
			return fmt.Sprintf("%U", r)
		}
	}
	return ""
}

// TestTerminalEscapesInOutput: a table named with terminal control sequences (SGR,
// an OSC that sets the window title, BEL) reaches the DLQ and the debug history.
// Every command's text output shows the name escaped, never the raw bytes; JSON
// output carries it exactly.
func TestTerminalEscapesInOutput(t *testing.T) {
	const table = "esc\x1b[31mRED\x1b]0;PWNED\a"
	const shown = `esc\x1b[31mRED\x1b]0;PWNED\x07`
	// A newline or a tab in a value must not make a line or a column of its own.
	const layout = "nl\nFAKE LINE\ttab"
	const layoutShown = `nl\nFAKE LINE\ttab`
	db := pgtest.NewDB(t)
	ident, ident2 := pgx.Identifier{table}.Sanitize(), pgx.Identifier{layout}.Sanitize()
	db.Exec(fmt.Sprintf(`CREATE TABLE %s (id int PRIMARY KEY); CREATE TABLE %s (id int PRIMARY KEY);
	                     CREATE PUBLICATION obs_pub FOR TABLE %s, %s`, ident, ident2, ident, ident2))
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.jsonl")
	if err := os.Symlink("/dev/full", bad); err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	env := []string{"OBS_ADMIN_TOKEN=t0ken"}
	cfg := writeConfig(t, opsConfig(db, addr, "OBS_ADMIN_TOKEN", "", fmt.Sprintf(`
  esc:
    entity: "*"
    event_type: INSERT
    retry: {max_attempts: 1}
    on_failure: dlq
    actions: [{type: file, name: out, path: %q, fsync: never}]
`, bad)))
	p := startService(t, env, "start", "--config", cfg)
	waitFor(t, 60*time.Second, "the service to be ready", func() bool { return httpStatus(addr, "/readyz") == http.StatusOK })
	db.Exec(fmt.Sprintf(`INSERT INTO %s VALUES (1)`, ident))
	db.Exec(fmt.Sprintf(`INSERT INTO %s VALUES (1)`, ident2))
	waitFor(t, 60*time.Second, "the dead letters", func() bool {
		return pgtest.QueryValue[int64](db, `SELECT count(*) FROM observer_dlq`) == 2
	})

	var items []dlq.Item
	cliJSON(t, env, &items, "dlq", "list", "--config", cfg)
	if len(items) != 2 || items[0].Table != table || items[1].Table != layout {
		t.Fatalf("JSON does not carry the table name exactly: %+v", items)
	}
	var evs []pipeline.DebugEvent
	cliJSON(t, env, &evs, "debug-event", "--history", "5", "--config", cfg)
	if len(evs) != 2 || evs[1].Table != table {
		t.Fatalf("unexpected debug history %+v", evs)
	}
	id := fmt.Sprint(items[0].ID)
	for _, args := range [][]string{
		{"dlq", "list"}, {"dlq", "show", id}, {"dlq", "stats", "--by-observer", "--by-error"},
		{"debug-event", "--history", "5"}, {"debug-event", "--event-id", evs[1].ID},
		{"status"}, {"status", "--detailed"}, {"metrics"}, {"cache-stats"},
		{"dlq", "list", "--format", "json"}, {"debug-event", "--history", "5", "--format", "json"},
	} {
		r := cli(t, env, append(args, "--config", cfg)...)
		if r.code != 0 {
			t.Fatalf("%v: exit code %d\n%s\n%s", args, r.code, r.stdout, r.stderr)
		}
		for name, out := range map[string]string{"stdout": r.stdout, "stderr": r.stderr} {
			if c := rawControl(out); c != "" {
				t.Fatalf("%v: %s holds a raw %s:\n%q", args, name, c, out)
			}
		}
		wantShown := args[0] == "dlq" && args[1] != "stats" || args[0] == "debug-event"
		if json := strings.Contains(strings.Join(args, " "), "json"); wantShown && !json && !strings.Contains(r.stdout, shown) {
			t.Fatalf("%v: the table name is not shown escaped (%s):\n%s", args, shown, r.stdout)
		}
	}
	r := cli(t, env, "dlq", "list", "--config", cfg)
	if !strings.Contains(r.stdout, layoutShown) || strings.Count(r.stdout, "\n") != 3 {
		t.Fatalf("a newline or tab in a table name changed the table's layout:\n%s", r.stdout)
	}
	// An error naming the table: retry fails again (the file is still /dev/full).
	r = cli(t, env, "dlq", "retry", id, "--config", cfg)
	if r.code != 1 || rawControl(r.stdout+r.stderr) != "" {
		t.Fatalf("unexpected retry outcome %d or a raw control character:\n%q\n%q", r.code, r.stdout, r.stderr)
	}
	p.stop()
}
