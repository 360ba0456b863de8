package main

import (
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fraiseql/fraiseql-observers/internal/pgtest"
)

// TestStartWaitsForPostgres: started while PostgreSQL's port is closed, the service
// does not exit: it logs each attempt and tries again with backoff, and once
// PostgreSQL is started on that port it streams the changes committed after.
func TestStartWaitsForPostgres(t *testing.T) {
	srv, err := pgtest.Start(pgtest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("postgres log:\n%s", srv.Log())
		}
		srv.Remove()
	})
	db := pgtest.NewDBOn(t, srv)
	db.Exec(`CREATE TABLE t (id int PRIMARY KEY, v int NOT NULL); CREATE PUBLICATION obs_pub FOR TABLE t`)
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	addr, out := freeAddr(t), filepath.Join(t.TempDir(), "events.jsonl")
	cfg := writeConfig(t, fmt.Sprintf(`
source: {dsn: %q, slot: obs_slot, publication: obs_pub, manage_slot: true, status_interval: 1s,
         reconnect: {initial_delay: 100ms, max_delay: 500ms}}
checkpoints: {interval: 200ms}
admin: {listen: %q}
observers:
  all:
    entity: t
    event_type: INSERT
    actions: [{type: file, name: out, path: %q}]
`, db.DSN(), addr, out))
	p := startService(t, nil, "start", "--config", cfg)
	waitFor(t, 60*time.Second, "three logged attempts to reach PostgreSQL", func() bool {
		if p.exited() {
			t.Fatalf("the service exited with code %d while PostgreSQL was down:\n%s", p.cmd.ProcessState.ExitCode(), p.output())
		}
		return strings.Contains(p.output(), `"attempt":3`)
	})
	if n := strings.Count(p.output(), "PostgreSQL cannot be reached; waiting for it"); n < 3 {
		t.Fatalf("%d attempts logged, want every one (at least 3):\n%s", n, p.output())
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 60*time.Second, "the service to be ready", func() bool {
		if p.exited() {
			t.Fatalf("the service exited with code %d:\n%s", p.cmd.ProcessState.ExitCode(), p.output())
		}
		return httpStatus(addr, "/readyz") == http.StatusOK
	})
	db.Exec(`INSERT INTO t SELECT g, 0 FROM generate_series(1, 5) g`)
	waitFor(t, 60*time.Second, "5 rows delivered", func() bool { return len(insertedIDs(t, out)) == 5 })
	if code := p.stop(); code != exitOK {
		t.Fatalf("exit code %d after SIGTERM, want 0", code)
	}
}
