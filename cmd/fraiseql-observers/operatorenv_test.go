package main

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fraiseql/fraiseql-observers/dlq"
	"github.com/fraiseql/fraiseql-observers/internal/pgtest"
)

// cliOnly runs a CLI command with exactly the given variables in its environment
// (and PATH), as an operator's shell without the service's EnvironmentFile would.
func cliOnly(t *testing.T, vars map[string]string, names []string, args ...string) cliResult {
	t.Helper()
	cmd := exec.Command(binPath, args...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	for _, n := range names {
		cmd.Env = append(cmd.Env, n+"="+vars[n])
	}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	return cliOutcome(t, args, err, out.String(), errb.String())
}

// TestOperatorCommandsNeedOnlyTheirVariables runs every operator command of
// docs/cli.md with only the variables it needs: the commands that talk to the admin
// endpoint with only its token, those that read PostgreSQL with only the DSN, and
// validate-config with none; no command needs the webhook's secret. start still
// refuses to run without a variable it needs.
func TestOperatorCommandsNeedOnlyTheirVariables(t *testing.T) {
	db := pgtest.NewDB(t)
	db.Exec(`CREATE TABLE t_ok (id int PRIMARY KEY, v int); CREATE TABLE t_bad (id int PRIMARY KEY, v int);
	         CREATE PUBLICATION obs_pub FOR TABLE t_ok, t_bad`)
	addr, dir := freeAddr(t), t.TempDir()
	badLink := filepath.Join(dir, "bad.jsonl")
	if err := os.Symlink("/dev/full", badLink); err != nil {
		t.Fatal(err)
	}
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {}))
	t.Cleanup(hook.Close)
	vars := map[string]string{
		"OBS_DSN":         db.DSN(),
		"OBS_ADMIN_TOKEN": "t0ken-for-tests",
		"HOOK_URL":        hook.URL + "/orders",
		"HOOK_SECRET":     "hook-s3cret",
	}
	cfg := writeConfig(t, fmt.Sprintf(`
source:
  dsn_env: OBS_DSN
  slot: obs_slot
  publication: obs_pub
  manage_slot: true
  status_interval: 1s
checkpoints: {enabled: true, interval: 200ms}
admin: {listen: %q, token_env: OBS_ADMIN_TOKEN}
replay_window: 64MiB
observers:
  ok:
    table: public.t_ok
    actions:
      - {type: file, name: out, path: %q}
      - {type: webhook, name: hook, url_env: HOOK_URL, signing_secret_env: HOOK_SECRET, allow_private_networks: true}
  bad:
    table: public.t_bad
    event_type: INSERT
    retry: {max_attempts: 1}
    on_failure: dlq
    actions: [{type: file, name: out, path: %q, fsync: never}]
`, addr, filepath.Join(dir, "ok.jsonl"), badLink))
	admin := []string{"OBS_ADMIN_TOKEN"}
	pg := []string{"OBS_DSN"}
	run := func(names []string, code int, want string, args ...string) cliResult {
		t.Helper()
		r := cliOnly(t, vars, names, append(args, "--config", cfg)...)
		if r.code != code || !strings.Contains(r.stdout+r.stderr, want) {
			t.Fatalf("%v with only %v: unexpected result; got exit %d; want %d and output with %q\nstdout:\n%s\nstderr:\n%s",
				args, names, r.code, code, want, r.stdout, r.stderr)
		}
		return r
	}

	// Offline: nothing needed; every variable is a warning.
	r := run(nil, 0, "Configuration is valid", "validate-config")
	for _, n := range []string{"OBS_DSN", "OBS_ADMIN_TOKEN", "HOOK_URL", "HOOK_SECRET"} {
		if !strings.Contains(r.stdout, "environment variable "+n+" is not set") {
			t.Fatalf("validate-config: no warning about %s:\n%s", n, r.stdout)
		}
	}
	run(nil, 2, "environment variable OBS_DSN is not set", "validate-config", "--detailed")
	// start needs every variable: it fails fast, at the key, before connecting.
	run([]string{"OBS_DSN", "OBS_ADMIN_TOKEN", "HOOK_URL"}, 2, "signing_secret_env: environment variable HOOK_SECRET is not set", "start")

	var env []string
	for n, v := range vars {
		env = append(env, n+"="+v)
	}
	p := startService(t, env, "start", "--config", cfg)
	waitFor(t, time.Minute, "the service to be ready", func() bool {
		if p.exited() {
			t.Fatalf("the service exited:\n%s", p.output())
		}
		return httpStatus(addr, "/readyz") == http.StatusOK
	})
	db.Exec(`INSERT INTO t_ok SELECT g, g FROM generate_series(1, 5) g; INSERT INTO t_bad SELECT g, g FROM generate_series(1, 2) g`)
	waitFor(t, time.Minute, "every event settled", func() bool {
		m := scrape(t, addr, vars["OBS_ADMIN_TOKEN"])
		return m["observer_dlq_items_total"] == 2 && m[`observer_actions_executed_total{action_type="webhook"}`] == 5 &&
			len(readEvents(t, filepath.Join(dir, "ok.jsonl"))) == 5
	})
	first := readEvents(t, filepath.Join(dir, "ok.jsonl"))[0]

	// The commands that talk to the service: the admin token only.
	run(admin, 0, "observer_events_processed_total", "metrics")
	run(admin, 0, "Slot: obs_slot", "status")
	run(admin, 0, "Row cache:", "cache-stats")
	run(admin, 0, first.ID, "debug-event", "--history", "10")
	run(admin, 0, "Event "+first.ID, "debug-event", "--event-id", first.ID)
	run(admin, 0, "Replaying transactions committed from", "replay", "--from-lsn", first.CommitLSN)
	run(admin, 0, "Stream:", "status", "--detailed")
	run(admin, 0, "Snapshot 1 of public.t_ok for observer ok: done, 5 rows read", "snapshot", "--table", "public.t_ok", "--observer", "ok")
	run(admin, 0, "public.t_ok", "snapshot", "status")
	run(admin, 0, "Snapshot 1 of public.t_ok for observer ok: done", "snapshot", "cancel", "1") // a finished one stays as it ended
	// Without the token they say which variable is missing.
	run(nil, 2, "admin.token_env: environment variable OBS_ADMIN_TOKEN is not set", "metrics")
	run(pg, 2, "admin.token_env: environment variable OBS_ADMIN_TOKEN is not set", "cache-stats")
	run(pg, 2, "admin.token_env: environment variable OBS_ADMIN_TOKEN is not set", "snapshot", "--table", "public.t_ok", "--observer", "ok")
	run(pg, 2, "admin.token_env: environment variable OBS_ADMIN_TOKEN is not set", "snapshot", "status")
	run(pg, 2, "admin.token_env: environment variable OBS_ADMIN_TOKEN is not set", "snapshot", "cancel", "1")

	// The commands that read PostgreSQL: the DSN only.
	run(pg, 0, "2 pending items", "dlq", "stats")
	var items []dlq.Item
	if err := jsonUnmarshal(run(pg, 0, "", "dlq", "list", "--format", "json").stdout, &items); err != nil || len(items) != 2 {
		t.Fatalf("unexpected dlq list; got %d items, %v", len(items), err)
	}
	run(pg, 0, items[0].EventID, "dlq", "show", fmt.Sprint(items[0].ID))
	run(pg, 1, "no space left on device", "dlq", "retry", fmt.Sprint(items[0].ID)) // delivered again, failed again
	run(pg, 0, "Would retry 2 items", "dlq", "retry-all", "--dry-run")
	if err := os.Remove(badLink); err != nil {
		t.Fatal(err)
	}
	run(pg, 0, fmt.Sprintf("Item %d delivered", items[0].ID), "dlq", "retry", fmt.Sprint(items[0].ID))
	run(pg, 0, fmt.Sprintf("Removed item %d", items[1].ID), "dlq", "remove", fmt.Sprint(items[1].ID))
	run(pg, 0, "showing state from PostgreSQL", "status") // the token's variable is unset
	run(pg, 0, "Slot WAL:", "status", "--detailed")
	run(nil, 2, "source.dsn_env: environment variable OBS_DSN is not set", "dlq", "stats")

	p.stop() // its exit code is not this test's business (closing the /dev/full file fails)
	run(pg, 0, "showing state from PostgreSQL", "status")
	run(pg, 0, "Slot WAL:", "status", "--detailed")
	run(admin, 6, "service not running", "metrics")
	run(admin, 6, "service not running", "snapshot", "status")
}
