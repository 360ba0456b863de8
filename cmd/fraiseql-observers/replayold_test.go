package main

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fraiseql/fraiseql-observers/internal/pgtest"
)

// TestReplayWarnsAboutOldImages: a replay in scope of an observer whose condition
// reads old values of a table without REPLICA IDENTITY FULL warns that such changes
// cannot be evaluated, and --require-old-images refuses it (exit 2); the condition
// error says why the old values are missing instead of suggesting to enable the cache
// that is on.
func TestReplayWarnsAboutOldImages(t *testing.T) {
	db := pgtest.NewDB(t)
	db.Exec(`CREATE TABLE orders (id int PRIMARY KEY, status text NOT NULL); CREATE PUBLICATION obs_pub FOR TABLE orders`)
	dir := t.TempDir()
	addr := freeAddr(t)
	cfg := writeConfig(t, opsConfig(db, addr, "", "replay_window: 1GiB", fmt.Sprintf(`
  shipped:
    table: public.orders
    event_type: UPDATE
    condition: "field_changed_to('status', 'shipped')"
    actions: [{type: file, name: out, path: %q}]
  audit:
    table: public.orders
    actions: [{type: file, name: out, path: %q}]
`, filepath.Join(dir, "shipped.jsonl"), filepath.Join(dir, "audit.jsonl"))))
	p := startAndWait(t, cfg, addr)
	db.Exec(`INSERT INTO orders VALUES (1, 'pending')`)
	db.Exec(`UPDATE orders SET status = 'shipped' WHERE id = 1`)
	waitFor(t, time.Minute, "the shipped event", func() bool { return len(readEvents(t, filepath.Join(dir, "shipped.jsonl"))) == 1 })
	from := readEvents(t, filepath.Join(dir, "shipped.jsonl"))[0].CommitLSN

	r := expectCLI(t, nil, exitConfig, nil, "replay", "--from-lsn", from, "--require-old-images", "--config", cfg)
	if !strings.Contains(r.stderr, "refusing to replay") || !strings.Contains(r.stderr, "observer shipped's condition reads old values") {
		t.Fatalf("unexpected refusal:\n%s", r.stderr)
	}
	r = expectCLI(t, nil, 0, []string{"Replaying transactions committed from " + from}, "replay", "--from-lsn", from, "--config", cfg)
	if !strings.Contains(r.stderr, "warning: observer shipped's condition reads old values, which public.orders logs only with REPLICA IDENTITY FULL") {
		t.Fatalf("the replay did not warn about observer shipped:\n%s", r.stderr)
	}
	// Only the observer in scope counts.
	r = expectCLI(t, nil, 0, nil, "replay", "--from-lsn", from, "--observer", "audit", "--require-old-images", "--config", cfg)
	if strings.Contains(r.stderr, "warning") {
		t.Fatalf("unexpected warning for observer audit:\n%s", r.stderr)
	}
	waitFor(t, time.Minute, "the replayed UPDATE to be judged", func() bool {
		return strings.Contains(p.output(), "the row cache had no image of this row")
	})
	if strings.Contains(p.output(), "or enable caching") {
		t.Fatalf("the condition error suggests enabling the cache that is on:\n%s", p.output())
	}
	p.stop()
}

// TestConsoleLogColoursOnlyOnTerminal: --log-format console writes no ANSI colour
// codes when stderr is a file or a pipe.
func TestConsoleLogColoursOnlyOnTerminal(t *testing.T) {
	cfg := writeConfig(t, `
source: {dsn: "postgres://nobody@127.0.0.1:1/none?sslmode=disable&connect_timeout=2"}
admin: {listen: ""}
observers:
  all:
    entity: t
    actions: [{type: log}]
`)
	// PostgreSQL cannot be reached there: the service waits for it (logging each
	// attempt) until it is stopped.
	p := startService(t, nil, "start", "--config", cfg, "--log-format", "console")
	waitFor(t, 60*time.Second, "a logged attempt to reach PostgreSQL", func() bool {
		return p.exited() || strings.Contains(p.output(), "PostgreSQL cannot be reached")
	})
	p.stop()
	out := p.output()
	if !strings.Contains(string(out), "starting") {
		t.Fatalf("no console log line:\n%s", out)
	}
	if strings.Contains(string(out), "\x1b[") {
		t.Fatalf("console log written to a pipe holds ANSI colour codes:\n%q", out)
	}
}

// TestValidateCountsInSingular: one problem is "1 error".
func TestValidateCountsInSingular(t *testing.T) {
	bad := writeConfig(t, `
source: {dsn: "postgres://x@127.0.0.1/db"}
observers:
  all:
    entity: t
    actions: [{type: nosuchaction}]
`)
	r := expectCLI(t, nil, exitConfig, []string{"Configuration is invalid: 1 error\n"}, "validate-config", bad)
	_ = r
}
