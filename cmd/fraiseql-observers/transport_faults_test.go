package main

import (
	"context"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/fraiseql/fraiseql-observers/internal/pgtest"
	"github.com/fraiseql/fraiseql-observers/internal/sinktest"
	"github.com/fraiseql/fraiseql-observers/lsn"
	"github.com/fraiseql/fraiseql-observers/service"
)

// The tests of this file break the transport under the binary's reader and
// executor processes (the rig of transport_test.go): a NATS node of three dies, the
// leading reader dies and its standby takes over, an executor is paused past its
// lease. The oracle slot decides what was committed.

// TestTransportNATSNodeKilled: on a three-node JetStream cluster with an R3
// stream, the stream's leader node is SIGKILLed while a reader and two executors
// stream changes: nothing is lost, each row's changes arrive in commit order,
// repeats carry the same event id, and the three processes go on without a
// restart.
func TestTransportNATSNodeKilled(t *testing.T) {
	cluster := sinktest.StartJetStreamCluster(t)
	r := newTransportRigAt(t, cluster.URL)
	r.replicas = 3
	reader, raddr := r.start(service.RoleReader, "reader-1")
	e1, e1addr := r.start(service.RoleExecutor, "exec-1")
	e2, e2addr := r.start(service.RoleExecutor, "exec-2")
	waitOwners(t, raddr, 2)
	info := streamInfo(t, cluster.URL, r.stream)
	if info.Config.Replicas != 3 {
		t.Fatalf("unexpected replicas of the stream the reader created; got %d; want 3", info.Config.Replicas)
	}

	r.write(20)
	waitFor(t, 60*time.Second, "the first deliveries", func() bool { return r.hook.count() >= 40 })
	wait := r.writeInBackground(300)
	n := r.hook.count()
	waitFor(t, 60*time.Second, "deliveries under write load", func() bool { return r.hook.count() >= n+100 })
	leader := streamInfo(t, cluster.URL, r.stream).Cluster.Leader
	node := cluster.Node(leader)
	if node == nil {
		t.Fatalf("unexpected stream leader %q", leader)
	}
	node.Kill()
	t.Logf("killed %s, the stream's leader, after %d deliveries", leader, r.hook.count())
	wait()
	r.write(50) // after the kill, whatever the background writer had left
	r.check()

	for _, p := range []struct {
		name string
		proc *proc
		addr string
	}{{"reader-1", reader, raddr}, {"exec-1", e1, e1addr}, {"exec-2", e2, e2addr}} {
		if p.proc.exited() {
			t.Fatalf("%s exited after the node loss:\n%s", p.name, p.proc.output())
		}
		waitFor(t, 60*time.Second, p.name+" to be ready", func() bool { return httpStatus(p.addr, "/readyz") == http.StatusOK })
	}
	waitOwners(t, raddr, 2)
}

// TestTransportReaderFailover: two readers with failover and two executors; the
// leading reader is SIGKILLed under write load. The standby takes the slot's lease
// and streams from the slot's confirmed position; JetStream's duplicate window
// drops the events it publishes again, so every committed change is delivered once,
// in commit order.
func TestTransportReaderFailover(t *testing.T) {
	r := newTransportRig(t)
	r.failover = true
	r1, _ := r.start(service.RoleReader, "reader-1")
	addr2 := freeAddr(t)
	cfg2 := r.config("reader-2", addr2)
	r2 := startService(t, nil, "start", "--role", service.RoleReader, "--config", cfg2)
	waitFor(t, 30*time.Second, "reader-2 to stand by", func() bool {
		if r2.exited() {
			t.Fatalf("reader-2 exited:\n%s", r2.output())
		}
		return strings.Contains(r2.output(), "standing by")
	})
	_, e1addr := r.start(service.RoleExecutor, "exec-1")
	r.start(service.RoleExecutor, "exec-2")
	waitOwners(t, e1addr, 2)

	r.write(20)
	waitFor(t, 60*time.Second, "the first deliveries", func() bool { return r.hook.count() >= 40 })
	wait := r.writeInBackground(300)
	n := r.hook.count()
	waitFor(t, 60*time.Second, "deliveries under write load", func() bool { return r.hook.count() >= n+100 })
	r1.kill()
	t.Logf("killed reader-1 after %d deliveries", r.hook.count())
	waitFor(t, 60*time.Second, "reader-2 to take over", func() bool {
		if r2.exited() {
			t.Fatalf("reader-2 exited:\n%s", r2.output())
		}
		return httpStatus(addr2, "/readyz") == http.StatusOK
	})
	wait()
	r.write(50)
	if repeats := r.check(); repeats != 0 {
		t.Fatalf("unexpected repeated deliveries after the failover; got %d; want 0 (JetStream's duplicate window drops re-published events)", repeats)
	}
	m := scrape(t, addr2, "")
	if m["observer_transport_publish_duplicates_total"] == 0 {
		t.Fatalf("reader-2 published nothing again (observer_transport_publish_duplicates_total 0, published %v): the failover did not exercise the duplicate window",
			m["observer_transport_published_total"])
	}
	t.Logf("reader-2 published %v events, %v of them dropped as duplicates", m["observer_transport_published_total"], m["observer_transport_publish_duplicates_total"])
	// The slot is confirmed past the last commit once JetStream holds it all.
	last, err := lsn.Parse(pgtest.QueryValue[string](r.db, `SELECT max(lsn)::text FROM pg_logical_slot_peek_changes($1, NULL, NULL) WHERE data LIKE 'COMMIT%'`, r.oracle))
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 60*time.Second, "reader-2 to confirm the slot past the last commit", func() bool { return confirmedFlush(t, r.db, "obs_slot") > last })
	waitFor(t, 30*time.Second, "status to show reader-2 leading", func() bool {
		return strings.Contains(cli(t, nil, "status", "--config", cfg2).stdout, "Leader: reader-2")
	})
}

// TestTransportPausedExecutorFenced: of two executors, exec-2 is SIGSTOPped with
// every one of its workers waiting in the receiver (so none is between its fence
// check and its request: a delivery under way when a process freezes is not
// recalled), and stays stopped past its lease while changes are written: exec-1
// takes its partitions and delivers everything. The receiver answers exec-2's held
// requests and exec-2 is resumed. From then on it sends no request until it has
// rejoined and the stream is drained, and it acknowledges none of the held events
// (its acks are fenced); it then delivers new changes for the partitions it owns
// again. Nothing is lost and each row's order holds.
func TestTransportPausedExecutorFenced(t *testing.T) {
	r := newTransportRig(t)
	// A held request is answered only after the pause; it must not time out first,
	// so that exec-2 has a settled delivery to acknowledge when it resumes.
	r.hookTimeout = "2m"
	_, raddr := r.start(service.RoleReader, "reader-1")
	r.start(service.RoleExecutor, "exec-1")
	e2, e2addr := r.start(service.RoleExecutor, "exec-2")
	waitOwners(t, raddr, 2)
	r.write(20)
	waitFor(t, 60*time.Second, "the first deliveries", func() bool { return r.hook.count() >= 40 })

	r.hook.hold("exec-2")
	wait := r.writeInBackground(150)
	// max_concurrency: 8 workers per action.
	waitFor(t, 60*time.Second, "every worker of exec-2 holding a delivery", func() bool { return len(r.hook.heldDeliveries()) >= 8 })
	if err := e2.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	held := r.hook.heldDeliveries()
	waitOwners(t, raddr, 1)
	wait()
	r.write(20)
	r.check()
	waitDrained(t, raddr)

	// exec-2 finds the answers to its held requests when it resumes.
	since := r.hook.count()
	r.hook.unhold()
	if err := e2.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	waitOwners(t, raddr, 2)
	waitDrained(t, raddr)
	for _, d := range r.hook.deliveries()[since:] {
		if d.listener == "exec-2" {
			t.Fatalf("exec-2 delivered %s (row %d v %d) after it resumed, with nothing left to deliver: a generation that lost its partitions delivered", d.eventID, d.row, d.v)
		}
	}
	m := scrape(t, e2addr, "")
	if got := m[`observer_transport_fenced_total{what="ack"}`]; got < float64(len(held)) {
		t.Fatalf("unexpected fenced acks of exec-2 after it resumed; got %v; want at least %d (the held deliveries it settled)", got, len(held))
	}
	t.Logf("exec-2: %d deliveries held across the pause, fenced acks %v, fenced deliveries %v",
		len(held), m[`observer_transport_fenced_total{what="ack"}`], m[`observer_transport_fenced_total{what="deliver"}`])

	// exec-2 goes on: it delivers new changes of the partitions it owns again.
	since = r.hook.count()
	r.write(50)
	r.check()
	if len(transportStatus(t, e2addr).Executor.Owned) > 0 {
		n := 0
		for _, d := range r.hook.deliveries()[since:] {
			if d.listener == "exec-2" {
				n++
			}
		}
		if n == 0 {
			t.Fatalf("exec-2 owns partitions again but delivered none of the new changes")
		}
	}
	if e2.exited() {
		t.Fatalf("exec-2 exited:\n%s", e2.output())
	}
}

// waitDrained waits until no partition holds a message: none pending, none
// delivered and unacknowledged.
func waitDrained(t *testing.T, addr string) {
	t.Helper()
	waitFor(t, 60*time.Second, "every partition drained", func() bool {
		ts := transportStatus(t, addr)
		if len(ts.Partitions) != 8 {
			return false
		}
		for _, p := range ts.Partitions {
			if p.Pending != 0 || p.AckPending != 0 {
				return false
			}
		}
		return true
	})
}

// streamInfo reads the stream's information from the cluster at url, once the
// stream has a leader.
func streamInfo(t *testing.T, url, stream string) *jetstream.StreamInfo {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	var info *jetstream.StreamInfo
	waitFor(t, 60*time.Second, "the stream to have a leader", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s, err := js.Stream(ctx, stream)
		if err != nil {
			return false
		}
		info = s.CachedInfo()
		return info.Cluster != nil && info.Cluster.Leader != ""
	})
	return info
}
