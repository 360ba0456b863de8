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

// TestSecondInstanceLeavesFirstAlone starts a second instance of the same slot
// without failover, as an operator might by mistake: it stops at preflight (exit 3)
// without touching shared state, and the first goes on streaming and writing its
// checkpoints (it is not fenced).
func TestSecondInstanceLeavesFirstAlone(t *testing.T) {
	db := pgtest.NewDB(t)
	db.Exec(`CREATE TABLE t (id int PRIMARY KEY, v int); CREATE PUBLICATION obs_pub FOR TABLE t`)
	out := filepath.Join(t.TempDir(), "events.jsonl")
	observers := fmt.Sprintf(`
  all:
    table: public.t
    event_type: INSERT
    actions: [{type: file, name: out, path: %q}]
`, out)
	addrA := freeAddr(t)
	a := startAndWait(t, writeConfig(t, opsConfig(db, addrA, "", "", observers)), addrA)
	insertEach(t, db, 1, 20)
	waitFor(t, time.Minute, "the first rows", func() bool { return len(insertedIDs(t, out)) == 20 })
	epoch := pgtest.QueryValue[int64](db, `SELECT epoch FROM observer_epochs WHERE slot_name = 'obs_slot'`)

	expectExit(t, exitPrefight, `replication slot .{1,2}obs_slot.{1,2} is active`, "start", "--config",
		writeConfig(t, opsConfig(db, freeAddr(t), "", "", observers)))
	if got := pgtest.QueryValue[int64](db, `SELECT epoch FROM observer_epochs WHERE slot_name = 'obs_slot'`); got != epoch {
		t.Fatalf("the instance that failed preflight changed the slot's epoch from %d to %d", epoch, got)
	}
	insertEach(t, db, 21, 20)
	waitFor(t, time.Minute, "rows after the second instance stopped", func() bool { return len(insertedIDs(t, out)) == 40 })
	// Several checkpoint writes later, the first instance still runs and is ready.
	waitFor(t, time.Minute, "the action's checkpoint", func() bool {
		return pgtest.QueryValue[bool](db, `SELECT EXISTS (SELECT 1 FROM observer_checkpoints WHERE action = 'all.out')`)
	})
	written := pgtest.QueryValue[time.Time](db, `SELECT created_at FROM observer_checkpoints WHERE action = 'all.out'`)
	waitFor(t, time.Minute, "a newer checkpoint", func() bool {
		return pgtest.QueryValue[time.Time](db, `SELECT created_at FROM observer_checkpoints WHERE action = 'all.out'`).After(written) &&
			httpStatus(addrA, "/readyz") == http.StatusOK
	})
	if a.exited() {
		t.Fatalf("the first instance exited:\n%s", a.output())
	}
	if code := a.stop(); code != 0 {
		t.Fatalf("unexpected exit code %d", code)
	}
}

// TestStandbyServesAdminEndpoint: a standby answers probes and scrapes — /healthz
// 200, /readyz 503 naming standby, /metrics with its role and the lease — and
// `status` with its configuration shows it, so alerts and probes cover every instance.
func TestStandbyServesAdminEndpoint(t *testing.T) {
	db := pgtest.NewDB(t)
	db.Exec(`CREATE TABLE t (id int PRIMARY KEY); CREATE PUBLICATION obs_pub FOR TABLE t`)
	out := filepath.Join(t.TempDir(), "events.jsonl")
	addrA, addrB := freeAddr(t), freeAddr(t)
	cfgB := writeConfig(t, failoverConfig(db, "node-b", addrB, out))
	a := startAndWait(t, writeConfig(t, failoverConfig(db, "node-a", addrA, out)), addrA)
	b := startService(t, nil, "start", "--config", cfgB)
	waitFor(t, 30*time.Second, "node-b to answer as a standby", func() bool {
		if b.exited() {
			t.Fatalf("node-b exited:\n%s", b.output())
		}
		return httpStatus(addrB, "/healthz") == http.StatusOK
	})
	waitFor(t, 30*time.Second, "node-b's /readyz to name the leader", func() bool {
		code, body := readyz(addrB)
		return code == http.StatusServiceUnavailable && strings.Contains(body, "standby") && strings.Contains(body, "node-a")
	})
	waitFor(t, 30*time.Second, "node-b's metrics", func() bool {
		m := scrape(t, addrB, "")
		return metric(t, m, `observer_role{role="standby"}`) == 1 && metric(t, m, `observer_role{role="leader"}`) == 0 &&
			metric(t, m, "observer_lease_epoch") >= 1 && metric(t, m, "observer_lease_remaining_seconds") > 0 &&
			metric(t, m, `observer_listener_health{listener_id="node-b"}`) == 1
	})
	mA := scrape(t, addrA, "")
	if metric(t, mA, `observer_role{role="leader"}`) != 1 || metric(t, mA, `observer_listener_health{listener_id="node-a"}`) != 1 {
		t.Fatalf("unexpected leader metrics: role %v, health %v", mA[`observer_role{role="leader"}`], mA[`observer_listener_health{listener_id="node-a"}`])
	}
	// The registry follows each instance's state within a heartbeat poll.
	waitFor(t, 30*time.Second, "status of the standby to show the leader", func() bool {
		return strings.Contains(cli(t, nil, "status", "--config", cfgB).stdout, "Leader: node-a (2/2 healthy)")
	})
	r := expectCLI(t, nil, 0, []string{"from the running service at", "Leader: node-a (2/2 healthy)", "This instance (node-b) is a standby"},
		"status", "--config", cfgB)
	if strings.Contains(r.stdout, "service not running") {
		t.Fatalf("status of the standby read PostgreSQL instead of asking it:\n%s", r.stdout)
	}
	var doc statusDoc
	cliJSON(t, nil, &doc, "status", "--config", cfgB)
	if doc.Source != "service" || doc.Role != "standby" || doc.Stream != nil {
		t.Fatalf("unexpected status document of the standby: source %q, role %q, stream %v", doc.Source, doc.Role, doc.Stream)
	}
	// The standby stops cleanly and says so in the registry.
	if code := b.stop(); code != 0 {
		t.Fatalf("the standby exited with %d", code)
	}
	if st := pgtest.QueryValue[string](db, `SELECT state FROM observer_listeners WHERE listener_id = 'node-b'`); st != "stopped" {
		t.Fatalf("unexpected registry state of the stopped standby %q", st)
	}
	if code := a.stop(); code != 0 {
		t.Fatalf("the leader exited with %d", code)
	}
}

// TestCheckpointsOffAndOn is the feature-level rollback of checkpoints and back: a
// run with checkpoints, one without (the slot moves past the stored checkpoints),
// and one with checkpoints again, which resumes from the slot instead of stopping
// with a gap (exit 4). No row is lost, and status says while they are off.
func TestCheckpointsOffAndOn(t *testing.T) {
	db := pgtest.NewDB(t)
	db.Exec(`CREATE TABLE t (id int PRIMARY KEY, v int); CREATE PUBLICATION obs_pub FOR TABLE t`)
	out := filepath.Join(t.TempDir(), "events.jsonl")
	observers := fmt.Sprintf(`
  all:
    table: public.t
    event_type: INSERT
    actions: [{type: file, name: out, path: %q}]
`, out)
	addr := freeAddr(t)
	on := writeConfig(t, opsConfig(db, addr, "", "", observers))
	off := writeConfig(t, strings.Replace(opsConfig(db, addr, "", "", observers), "checkpoints: {enabled: true, interval: 200ms}", "checkpoints: {enabled: false}", 1))
	run := func(cfg string, first int) {
		t.Helper()
		p := startAndWait(t, cfg, addr)
		insertEach(t, db, first, 30)
		waitFor(t, time.Minute, fmt.Sprintf("rows up to %d", first+29), func() bool { return len(insertedIDs(t, out)) == first+29 })
		if cfg == off {
			expectCLI(t, nil, 0, []string{"Checkpoints: disabled since"}, "status", "--config", off)
		}
		if code := p.stop(); code != 0 {
			t.Fatalf("unexpected exit code %d:\n%s", code, p.output())
		}
	}
	run(on, 1)
	run(off, 31)
	// The slot confirmed the second run's rows; the stored checkpoints did not move.
	insertEach(t, db, 61, 30) // committed while nothing runs
	run(on, 91)
	ids := insertedIDs(t, out)
	for id := 1; id <= 120; id++ {
		if !ids[id] {
			t.Fatalf("row %d was never delivered", id)
		}
	}
	if n := pgtest.QueryValue[int64](db, `SELECT count(*) FROM observer_checkpoints WHERE disabled_at IS NOT NULL`); n != 0 {
		t.Fatalf("%d checkpoint rows still marked as disabled after checkpoints were written again", n)
	}
}
