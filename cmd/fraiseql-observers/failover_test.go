package main

import (
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fraiseql/fraiseql-observers/internal/pgtest"
)

// failoverConfig is a configuration for one of several instances sharing a slot.
func failoverConfig(db *pgtest.DB, listener, addr, out string) string {
	return fmt.Sprintf(`
listener_id: %s
source: {dsn: %q, slot: obs_slot, publication: obs_pub, manage_slot: true, status_interval: 1s,
         reconnect: {initial_delay: 100ms, max_delay: 1s}}
checkpoints: {interval: 200ms}
failover: {enabled: true, lease_duration: 3s, renew_interval: 500ms}
admin: {listen: %q}
observers:
  all:
    entity: t
    event_type: INSERT
    actions: [{type: file, name: out, path: %q}]
`, listener, db.DSN(), addr, out)
}

// TestFailover runs two instances on one slot: one leads, the other stands by and
// `status` shows both healthy. Killing the leader hands the slot to the standby, which
// goes on from the checkpoints; pausing a leader past its lease hands it over too, and
// the old leader steps down when it wakes up and stands by again, so it takes over
// when the new leader stops. No row is lost.
func TestFailover(t *testing.T) {
	db := pgtest.NewDB(t)
	db.Exec(`CREATE TABLE t (id int PRIMARY KEY); CREATE PUBLICATION obs_pub FOR TABLE t`)
	out := filepath.Join(t.TempDir(), "events.jsonl")
	addrA, addrB, addrC := freeAddr(t), freeAddr(t), freeAddr(t)
	cfgA := writeConfig(t, failoverConfig(db, "node-a", addrA, out))
	cfgB := writeConfig(t, failoverConfig(db, "node-b", addrB, out))
	cfgC := writeConfig(t, failoverConfig(db, "node-c", addrC, out))

	a := startAndWait(t, cfgA, addrA)
	b := startService(t, nil, "start", "--config", cfgB)
	waitFor(t, 30*time.Second, "node-b to stand by", func() bool { return strings.Contains(b.output(), "standing by") })
	waitFor(t, 30*time.Second, "both instances healthy", func() bool {
		r := cli(t, nil, "status", "--config", cfgA)
		return strings.Contains(r.stdout, "Leader: node-a (2/2 healthy)")
	})
	insert := func(from, to int) {
		for i := from; i <= to; i++ {
			db.Exec(`INSERT INTO t VALUES ($1)`, i)
		}
	}
	insert(1, 50)
	waitFor(t, 30*time.Second, "the first rows", func() bool { return len(idsInFile(t, out, -1)) == 50 })

	// The leader dies: the standby takes the lease once it expires and goes on.
	a.kill()
	insert(51, 100)
	waitFor(t, 60*time.Second, "node-b to take over", func() bool { return httpStatus(addrB, "/readyz") == 200 })
	waitFor(t, 60*time.Second, "every row after the failover", func() bool { return len(idsInFile(t, out, -1)) == 100 })
	if b.exited() {
		t.Fatalf("node-b exited:\n%s", b.output())
	}

	// A new standby; then the leader is paused past its lease: the standby takes over,
	// and the paused one, once resumed, finds itself fenced and steps down.
	c := startService(t, nil, "start", "--config", cfgC)
	waitFor(t, 30*time.Second, "node-c to stand by", func() bool { return strings.Contains(c.output(), "standing by") })
	b.cmd.Process.Signal(syscall.SIGSTOP)
	insert(101, 150)
	waitFor(t, 60*time.Second, "node-c to take over from the paused leader", func() bool { return httpStatus(addrC, "/readyz") == 200 })
	b.cmd.Process.Signal(syscall.SIGCONT)
	waitFor(t, 60*time.Second, "the resumed ex-leader to step down and stand by again", func() bool {
		if b.exited() {
			t.Fatalf("the resumed ex-leader exited instead of standing by again:\n%s", b.output())
		}
		return strings.Contains(b.output(), "another instance leads the slot now: standing by again") &&
			strings.Count(b.output(), `"message":"standing by`) >= 2
	})
	waitFor(t, 60*time.Second, "every row", func() bool { return len(idsInFile(t, out, -1)) == 150 })
	waitFor(t, 30*time.Second, "status to show node-c leading and node-b standing by", func() bool {
		out := cli(t, nil, "status", "--config", cfgC).stdout
		outB := cli(t, nil, "status", "--config", cfgB).stdout
		return strings.Contains(out, "Leader: node-c") && strings.Contains(out, "Failover: lease held by node-c") &&
			strings.Contains(outB, "Leader: node-c") && strings.Contains(outB, "This instance (node-b) is a standby")
	})
	if code := httpStatus(addrB, "/readyz"); code != http.StatusServiceUnavailable {
		t.Fatalf("unexpected /readyz of the standby node-b; got %d; want 503", code)
	}
	// The standby takes over again when the leader stops.
	if code := c.stop(); code != 0 {
		t.Fatalf("unexpected exit code %d", code)
	}
	insert(151, 160)
	waitFor(t, 60*time.Second, "node-b to lead again", func() bool { return httpStatus(addrB, "/readyz") == 200 })
	waitFor(t, 60*time.Second, "the rows after node-c stopped", func() bool { return len(idsInFile(t, out, -1)) == 160 })
	if code := b.stop(); code != 0 {
		t.Fatalf("unexpected exit code of node-b %d", code)
	}
}
