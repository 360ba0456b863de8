package service

import (
	"context"
	"errors"
	"net"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/fraiseql/fraiseql-observers/checkpoint"
	"github.com/fraiseql/fraiseql-observers/internal/pgtest"
	"github.com/fraiseql/fraiseql-observers/registry"
)

// listenerState reads the registry's state of a listener ("" when it has no record).
func listenerState(db *pgtest.DB, listener string) string {
	return pgtest.QueryValue[string](db, `SELECT coalesce((SELECT state FROM observer_listeners WHERE listener_id = $1), '')`, listener)
}

// TestShutdownDrains: a cancelled service delivers what it read, writes its
// checkpoints, records itself stopped and leaves no goroutine behind.
func TestShutdownDrains(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	db := newDB(t)
	rec := &recorder{}
	r := start(t, testConfig(t, db, "node-a", ""), rec)
	waitFor(t, time.Minute, "the service to be ready", func() bool { return r.svc.Ready() == nil })
	db.Exec(`INSERT INTO t SELECT g, 0 FROM generate_series(1, 20) g`)
	waitFor(t, time.Minute, "20 events delivered", func() bool { return len(rec.delivered()) == 20 })
	if err := r.stop(t, time.Minute); err != nil {
		t.Fatalf("Run after cancel: %v", err)
	}
	if st := listenerState(db, "node-a"); st != registry.StateStopped {
		t.Fatalf("registry state %q after a clean stop, want %q", st, registry.StateStopped)
	}
	last := rec.delivered()[19]
	commit, _, _ := strings.Cut(last, ":")
	if ok := pgtest.QueryValue[bool](db, `SELECT commit_lsn >= $1::pg_lsn FROM observer_checkpoints WHERE slot_name = 'obs_slot' AND action = 'all.out'`, commit); !ok {
		t.Fatalf("the action's checkpoint is before the last delivered event %s", last)
	}
}

// TestShutdownCancelsStuckDeliveries: the second tier. A delivery still running when
// pipeline.shutdown_timeout has passed is cancelled, Run returns, the event is not
// confirmed to PostgreSQL, and a restarted service delivers it.
func TestShutdownCancelsStuckDeliveries(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	db := newDB(t)
	cfg := testConfig(t, db, "node-a", "pipeline: {shutdown_timeout: 300ms}")
	stuck := &recorder{block: true}
	r := start(t, cfg, stuck)
	waitFor(t, time.Minute, "the service to be ready", func() bool { return r.svc.Ready() == nil })
	db.Exec(`INSERT INTO t VALUES (1, 0)`)
	waitFor(t, time.Minute, "the delivery to start", func() bool { return stuck.entered.Load() == 1 })
	err := r.stop(t, time.Minute)
	if err != nil && !errors.Is(err, context.Canceled) {
		t.Fatalf("Run after a cancelled drain: %v", err)
	}
	if n := stuck.cancelled.Load(); n != 1 {
		t.Fatalf("%d deliveries cancelled by the shutdown, want 1", n)
	}
	rec := &recorder{}
	r = start(t, cfg, rec)
	waitFor(t, time.Minute, "the event to be delivered after the restart", func() bool { return len(rec.delivered()) == 1 })
	if err := r.stop(t, time.Minute); err != nil {
		t.Fatalf("Run after cancel: %v", err)
	}
}

// TestFailoverHandsOver: with failover, a second instance stands by while the first
// holds the slot's lease, takes the lease (a newer epoch) as soon as the first stops
// cleanly, and streams.
func TestFailoverHandsOver(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	db := newDB(t)
	failover := "failover: {enabled: true, lease_duration: 10m, renew_interval: 200ms}"
	recA, recB := &recorder{}, &recorder{}
	a := start(t, testConfig(t, db, "node-a", failover), recA)
	waitFor(t, time.Minute, "node-a to be ready", func() bool { return a.svc.Ready() == nil })

	// node-b's New waits for the lease: it runs in its own goroutine.
	cfgB := testConfig(t, db, "node-b", failover)
	ctxB, cancelB := context.WithCancel(context.Background())
	defer cancelB()
	built := make(chan *Service, 1)
	doneB := make(chan error, 1)
	go func() {
		svc, err := New(ctxB, cfgB, testLogger(t), Options{Actions: testActions{cfgB, recB}, Version: "test"})
		if err != nil {
			doneB <- err
			return
		}
		built <- svc
		doneB <- svc.Run(ctxB)
	}()
	waitFor(t, time.Minute, "node-b to stand by", func() bool { return listenerState(db, "node-b") == registry.StateStandby })
	db.Exec(`INSERT INTO t VALUES (1, 0)`)
	waitFor(t, time.Minute, "node-a to deliver", func() bool { return len(recA.delivered()) == 1 })
	select {
	case <-built:
		t.Fatal("node-b built while node-a holds the lease")
	default:
	}
	epochA := pgtest.QueryValue[int64](db, `SELECT epoch FROM observer_epochs WHERE slot_name = 'obs_slot'`)

	if err := a.stop(t, time.Minute); err != nil {
		t.Fatalf("node-a: %v", err)
	}
	var b *Service
	select {
	case b = <-built:
	case err := <-doneB:
		t.Fatalf("node-b ended while standing by: %v", err)
	case <-time.After(time.Minute):
		t.Fatal("node-b did not take over within a minute of node-a's clean stop (its lease runs 10m)")
	}
	waitFor(t, time.Minute, "node-b to be ready", func() bool { return b.Ready() == nil })
	holder := pgtest.QueryValue[string](db, `SELECT listener_id || ' ' || epoch FROM observer_epochs WHERE slot_name = 'obs_slot'`)
	if want := "node-b " + strconv.FormatInt(epochA+1, 10); holder != want {
		t.Fatalf("lease %q after the takeover, want %q", holder, want)
	}
	db.Exec(`INSERT INTO t VALUES (2, 0)`)
	waitFor(t, time.Minute, "node-b to deliver", func() bool { return len(recB.delivered()) >= 1 })
	if slices.Equal(recA.delivered(), recB.delivered()) {
		t.Fatalf("node-b delivered only what node-a did: %v", recB.delivered())
	}
	cancelB()
	select {
	case err := <-doneB:
		if err != nil {
			t.Fatalf("node-b: %v", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("node-b's Run did not return within a minute")
	}
}

// TestFencedLeaderStops: a leader whose lease another instance took under a newer
// epoch stops with checkpoint.ErrFenced.
func TestFencedLeaderStops(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	db := newDB(t)
	r := start(t, testConfig(t, db, "node-a", "failover: {enabled: true, lease_duration: 30s, renew_interval: 200ms}"), &recorder{})
	waitFor(t, time.Minute, "node-a to be ready", func() bool { return r.svc.Ready() == nil })
	db.Exec(`UPDATE observer_epochs SET epoch = epoch + 1, listener_id = 'intruder', expires_at = now() + interval '1 hour'`)
	if err := r.wait(t, time.Minute); !errors.Is(err, checkpoint.ErrFenced) {
		t.Fatalf("Run of a fenced leader: %v, want checkpoint.ErrFenced", err)
	}
}

// TestNewWaitsForDatabase: New keeps trying while nothing listens on the source's
// port, and returns ErrStoppedWaitingForDB when stopped meanwhile.
func TestNewWaitsForDatabase(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close() // the port is closed: connections are refused
	db := newDB(t)
	dsn := strings.Replace(db.DSN(), ":"+strconv.Itoa(db.Server.Port)+"/", ":"+strconv.Itoa(port)+"/", 1)
	if dsn == db.DSN() {
		t.Fatalf("no port in the DSN %s", dsn)
	}
	cfg := testConfigDSN(t, dsn, "node-a", "")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	attempts := &countingWriter{}
	done := make(chan error, 1)
	go func() {
		_, err := New(ctx, cfg, testLogger(t).Output(attempts), Options{Actions: testActions{cfg, &recorder{}}})
		done <- err
	}()
	waitFor(t, time.Minute, "three attempts logged", func() bool { return attempts.count("PostgreSQL cannot be reached") >= 3 })
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, ErrStoppedWaitingForDB) {
			t.Fatalf("New stopped while waiting: %v, want ErrStoppedWaitingForDB", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("New did not return within a minute of its context's end")
	}
}
