package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"text/template"
	"time"

	"github.com/fraiseql/fraiseql-observers/internal/pgtest"
)

var updateCLIDocs = flag.Bool("update-cli-docs", false, "run every CLI command against a real service and rewrite docs/cli.md from testdata/cli.md.tmpl")

// TestCLIDocs regenerates docs/cli.md: every output shown there is captured from a run
// of the commands against a real PostgreSQL and service (scripts/capture-cli.sh).
func TestCLIDocs(t *testing.T) {
	if !*updateCLIDocs {
		t.Skip("run with -update-cli-docs (scripts/capture-cli.sh) to regenerate docs/cli.md")
	}
	db := pgtest.NewDB(t)
	db.Exec(`CREATE TABLE orders (id bigint PRIMARY KEY, customer text NOT NULL, status text NOT NULL, total numeric(12,2) NOT NULL);
	         CREATE TABLE payments (id bigint PRIMARY KEY, order_id bigint NOT NULL, amount numeric(12,2) NOT NULL);
	         CREATE PUBLICATION fraiseql_observers FOR TABLE orders, payments`)
	dir := t.TempDir()
	addr := "127.0.0.1:9187"
	if httpStatus(addr, "/healthz") != 0 {
		addr = freeAddr(t)
	}
	if err := os.Symlink("/dev/full", filepath.Join(dir, "ledger.jsonl")); err != nil {
		t.Fatal(err)
	}
	config := fmt.Sprintf(`listener_id: listener-1
source:
  dsn: %q
  slot: fraiseql_observers
  publication: fraiseql_observers
  manage_slot: true
  status_interval: 1s
checkpoints: {enabled: true, interval: 1s}
dlq: {enabled: true}
admin: {listen: %q}
replay_window: 1GiB
observers:
  order_events:
    entity: public.orders
    event_type: [INSERT, UPDATE, DELETE]
    actions:
      - {type: file, name: audit, path: orders.jsonl}
  order_shipped:
    entity: public.orders
    event_type: UPDATE
    condition: "field_changed_to('status', 'shipped')"
    actions:
      - {type: file, name: notify, path: shipped.jsonl}
  payment_ledger:
    entity: public.payments
    event_type: INSERT
    retry: {max_attempts: 3, backoff_strategy: exponential, initial_delay: 50ms, max_delay: 1s}
    on_failure: dlq
    actions:
      - {type: file, name: ledger, path: ledger.jsonl, fsync: never}
`, db.DSN(), addr)
	os.WriteFile(filepath.Join(dir, "config.yaml"), []byte(config), 0o600)
	rollback, _ := os.ReadFile("../../configs/testdata/seed_rollback.yaml")
	os.WriteFile(filepath.Join(dir, "rollback.yaml"), rollback, 0o600)

	redact := func(s string) string {
		s = strings.ReplaceAll(s, db.DSN(), "postgres://observer@db.internal:5432/app")
		s = strings.ReplaceAll(s, dir+"/", "")
		return regexp.MustCompile(`/tmp/[^ "]*pgtest[^ "]*`).ReplaceAllString(s, "/var/run/postgresql")
	}
	run := func(args ...string) string {
		cmd := exec.Command(binPath, args...)
		cmd.Dir = dir
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		err := cmd.Run()
		code := 0
		if ee := (*exec.ExitError)(nil); errors.As(err, &ee) {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		shown := make([]string, len(args))
		for i, a := range args {
			shown[i] = shellQuote(a)
		}
		text := "$ fraiseql-observers " + strings.Join(shown, " ") + "\n" + strings.TrimRight(out.String(), "\n")
		if code != 0 {
			text += fmt.Sprintf("\n$ echo $?\n%d", code)
		}
		return redact(text)
	}
	var svc *proc
	funcs := template.FuncMap{
		"run": func(args ...string) string { return run(args...) },
		"sql": func(q string) string {
			db.Exec(q)
			return ""
		},
		"start": func() string {
			svc = startServiceIn(t, dir, "start", "--config", "config.yaml")
			waitFor(t, time.Minute, "the service to stream", func() bool { return httpStatus(addr, "/readyz") == 200 })
			return ""
		},
		"settle": func(n int) string {
			waitFor(t, time.Minute, "events settled", func() bool {
				m := scrape(t, addr, "")
				return m[`observer_events_processed_total{listener_id="listener-1"}`] >= float64(n) && m["observer_inflight_bytes"] == 0 &&
					m["observer_checkpoint_age_seconds"] > 0 && m["observer_wal_rate_bytes_per_second"] >= 0 && m["observer_slot_active"] == 1
			})
			time.Sleep(2 * time.Second) // let the checkpoint, heartbeat and slot monitor catch up for the captures
			return ""
		},
		"stop": func() string {
			svc.stop()
			return ""
		},
		"fix": func() string {
			os.Remove(filepath.Join(dir, "ledger.jsonl"))
			return ""
		},
		"eventID": func(file string, i int) string {
			evs := readEvents(t, filepath.Join(dir, file))
			return evs[i].ID
		},
		"commitLSN": func(file string, i int) string {
			evs := readEvents(t, filepath.Join(dir, file))
			return evs[i].CommitLSN
		},
		"dlqID": func(i int) string {
			return fmt.Sprint(pgtest.QueryValue[int64](db, fmt.Sprintf(`SELECT id FROM observer_dlq ORDER BY id OFFSET %d LIMIT 1`, i)))
		},
		"version": func() string { return run("--version") },
	}
	tmpl, err := template.New("cli.md.tmpl").Funcs(funcs).ParseFiles("testdata/cli.md.tmpl")
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := tmpl.Execute(&out, nil); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile("../../docs/cli.md", out.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// shellQuote quotes an argument for a POSIX shell when it needs it.
func shellQuote(a string) string {
	if a != "" && strings.Trim(a, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_./:=,-") == "" {
		return a
	}
	return "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
}

// startServiceIn is startService with a working directory.
func startServiceIn(t *testing.T, dir string, args ...string) *proc {
	t.Helper()
	wd, _ := os.Getwd()
	if err := os.Chdir(dir); err != nil {
		t.Fatal(err)
	}
	defer os.Chdir(wd)
	return startService(t, nil, args...)
}
