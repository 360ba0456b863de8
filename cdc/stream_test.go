package cdc

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/fraiseql/fraiseql-observers/decoder"
	"github.com/fraiseql/fraiseql-observers/internal/pgtest"
	"github.com/fraiseql/fraiseql-observers/lsn"
)

// withWalSenderTimeout sets wal_sender_timeout for the session's connections.
func withWalSenderTimeout(d string) func(string) string {
	return func(dsn string) string { return dsn + "&options=-c%20wal_sender_timeout%3D" + d }
}

// TestStatusUpdatesWhileConsumerFull keeps the consumer full for well over three
// wal_sender_timeouts while a backlog waits in the stream. The session stops reading
// but keeps sending status updates (which the walsender answers with keepalives), so
// PostgreSQL keeps the same walsender, and the time spent waiting for the consumer
// does not count as a silent connection (receive_timeout is shorter than the wait).
// Once the consumer takes events again, the whole backlog arrives.
func TestStatusUpdatesWhileConsumerFull(t *testing.T) {
	checkLeaks(t)
	r := newRig(t, rigOptions{dsn: withWalSenderTimeout("2s"), options: func(o *Options, _ lsn.LSN) {
		o.ReceiveTimeout = time.Second
	}})
	var timeout string
	if err := r.pool.QueryRow(context.Background(), "SHOW wal_sender_timeout").Scan(&timeout); err != nil || timeout != "2s" {
		t.Fatalf("unexpected wal_sender_timeout through the DSN; got %q (%v); want 2s", timeout, err)
	}
	r.gate.full.Store(true)
	r.run()
	waitUntil(t, "the session to stream", func() bool { return r.sess.Status().Connected && r.walsender() != 0 })
	pid := r.walsender()
	r.insert(1, 500)

	// Three timeouts past the moment the consumer was full, as the server saw the
	// session's status updates arrive.
	blocked := time.Now()
	waitUntil(t, "status updates for 3 × wal_sender_timeout", func() bool {
		if now := r.walsender(); now != pid {
			t.Fatalf("the walsender was replaced while the consumer was full (pid %d, now %d):\n%s", pid, now, r.log)
		}
		return r.replyTime().After(blocked.Add(6 * time.Second))
	})
	st := r.sess.Status()
	if st.Reconnects != 0 || st.LastError != "" {
		t.Fatalf("the session reconnected while the consumer was full: %d reconnects, last error %q", st.Reconnects, st.LastError)
	}
	if n := r.gate.count(); n != 0 {
		t.Fatalf("the session handed over %d events to a full consumer", n)
	}
	if st.ReceivedLSN != r.start {
		t.Fatalf("the session read the stream while the consumer was full (received %s, started at %s)", st.ReceivedLSN, r.start)
	}

	r.gate.open()
	evs := r.waitEvents(500)
	for i, ev := range evs {
		if want := fmt.Sprint(i + 1); id(ev) != want {
			t.Fatalf("unexpected event %d; got id %s; want %s", i, id(ev), want)
		}
	}
	if now := r.walsender(); now != pid {
		t.Fatalf("the walsender was replaced (pid %d, now %d)", pid, now)
	}
}

// TestFlushPositionOnlyAcknowledged receives two transactions and acknowledges them
// one at a time. The slot's confirmed_flush_lsn never passes a transaction with an
// unacknowledged event — not on status updates, and not on keepalives reporting newer
// WAL — and reaches each one once it is acknowledged. Passing means beyond the start
// of its commit record (its commit LSN): PostgreSQL skips a transaction whose commit
// record starts before the confirmed position, so confirming exactly its commit LSN
// keeps it. (A keepalive sent while the walsender was about to send A reports the
// end of the record before A's commit, which is that LSN; with nothing in flight
// the session confirms it.)
func TestFlushPositionOnlyAcknowledged(t *testing.T) {
	checkLeaks(t)
	r := newRig(t, rigOptions{setup: `CREATE TABLE t (id int PRIMARY KEY, v text); CREATE TABLE u (id int);
CREATE PUBLICATION pub FOR TABLE t`})
	r.run()
	r.insert(1, 3) // transaction A
	r.insert(4, 6) // transaction B
	evs := r.waitEvents(6)
	a, b := evs[0].ID.Commit, evs[3].ID.Commit
	if a == b || evs[2].ID.Commit != a || evs[5].ID.Commit != b {
		t.Fatalf("unexpected transactions: %v", evs)
	}
	if got := r.sess.Status().ReceivedLSN; got <= b {
		t.Fatalf("unexpected received position %s; want past B's commit %s", got, b)
	}

	// Nothing acknowledged, and WAL written past both transactions: the slot stays
	// before A (it may have confirmed WAL before A that held nothing for us).
	r.db.Exec(`INSERT INTO u SELECT generate_series(1, 100)`)
	r.waitReplies(3)
	if got := r.confirmed(); got > a {
		t.Fatalf("the slot confirmed %s with nothing acknowledged, past transaction A's commit LSN %s", got, a)
	}

	// A acknowledged: the slot reaches A's end, not B.
	r.gate.ack(func(ev *decoder.Event) bool { return ev.ID.Commit == a })
	waitUntil(t, "the slot to confirm transaction A", func() bool { return r.confirmed() > a })
	r.waitReplies(3)
	if got := r.confirmed(); got > b {
		t.Fatalf("the slot confirmed %s, past transaction B's commit LSN %s, whose events are not acknowledged", got, b)
	}
	if got := r.sess.Status().ConfirmedLSN; got > b {
		t.Fatalf("the session reports confirming %s, past transaction B's commit LSN %s", got, b)
	}

	// B acknowledged: the slot passes it.
	r.gate.ack(func(*decoder.Event) bool { return true })
	waitUntil(t, "the slot to confirm transaction B", func() bool { return r.confirmed() > b })
}

// TestIdleAdvance writes only to a table outside the publication: nothing is in
// flight, so the session confirms the WAL end the keepalives report and the slot does
// not hold WAL back for changes that concern nobody.
func TestIdleAdvance(t *testing.T) {
	checkLeaks(t)
	r := newRig(t, rigOptions{setup: `CREATE TABLE t (id int PRIMARY KEY, v text); CREATE TABLE u (id int);
CREATE PUBLICATION pub FOR TABLE t`})
	r.run()
	waitUntil(t, "the session to stream", func() bool { return r.sess.Status().Connected })
	before := r.currentWAL()
	r.db.Exec(`INSERT INTO u SELECT generate_series(1, 100)`)
	waitUntil(t, "the slot to confirm past the unpublished transaction", func() bool { return r.confirmed() > before })
	if n := r.gate.count(); n != 0 {
		t.Fatalf("unexpected events from an unpublished table: %d", n)
	}
}

// TestRewind replays from the second of two transactions, still in the slot thanks to
// a replay window: that transaction's events (same ids) arrive again, the first one's
// do not, and the session goes on streaming afterwards. Positions outside what the
// slot keeps or what was received are refused.
func TestRewind(t *testing.T) {
	checkLeaks(t)
	r := newRig(t, rigOptions{options: func(o *Options, _ lsn.LSN) { o.ReplayWindowBytes = 1 << 40 }})
	r.gate.autoAck.Store(true)
	r.run()
	r.insert(1, 3)
	r.insert(4, 5)
	first := r.waitEvents(5)
	b := first[3].ID.Commit
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	oldest, err := r.sess.OldestReplayable(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if oldest != r.start {
		t.Fatalf("unexpected oldest replayable position %s; want %s (held by the replay window)", oldest, r.start)
	}
	var tooOld *ReplayTooOldError
	if err := r.sess.Rewind(ctx, oldest-1); !errors.As(err, &tooOld) || tooOld.Oldest != oldest {
		t.Fatalf("unexpected result of a rewind before the oldest position; got %v; want a ReplayTooOldError at %s", err, oldest)
	}
	received := r.sess.Status().ReceivedLSN
	if err := r.sess.Rewind(ctx, received+1); err == nil || !strings.Contains(err.Error(), "after the last position received") {
		t.Fatalf("unexpected result of a rewind past the received position; got %v", err)
	}
	if n := r.gate.count(); n != 5 {
		t.Fatalf("a refused rewind sent events again: %d events", n)
	}

	if err := r.sess.Rewind(ctx, b); err != nil {
		t.Fatal(err)
	}
	again := r.waitEvents(7)[5:]
	for i, want := range first[3:] {
		if again[i].ID != want.ID || id(again[i]) != id(want) {
			t.Fatalf("replayed event %d differs; got %s (id %s); want %s (id %s)", i, again[i].ID, id(again[i]), want.ID, id(want))
		}
	}
	r.insert(6, 6)
	if ev := r.waitEvents(8)[7]; id(ev) != "6" {
		t.Fatalf("unexpected event after the replay; got id %s; want 6", id(ev))
	}
	if n := r.sess.Status().Reconnects; n != 0 {
		t.Fatalf("a rewind counted as %d reconnects", n)
	}
}

// TestPublicationProblems: a publication dropped while the session streams, and a
// slot created before its publication, both end Run with a publication
// PreflightError (recognised by SQLSTATE 42704 from the walsender and the catalog)
// instead of reconnecting for ever.
func TestPublicationProblems(t *testing.T) {
	t.Run("dropped while streaming", func(t *testing.T) {
		checkLeaks(t)
		r := newRig(t, rigOptions{})
		r.gate.autoAck.Store(true)
		r.run()
		r.insert(1, 1)
		r.waitEvents(1)
		r.db.Exec(`DROP PUBLICATION pub`)
		r.insert(2, 2)
		err := r.wait(time.Minute)
		var pe *PreflightError
		if !errors.As(err, &pe) || pe.Check != "publication" || !strings.Contains(pe.Msg, "was dropped while the service streamed") {
			t.Fatalf("unexpected result of Run; got %v; want a publication PreflightError saying it was dropped", err)
		}
	})
	t.Run("slot older than the publication", func(t *testing.T) {
		checkLeaks(t)
		r := newRig(t, rigOptions{setup: `CREATE TABLE t (id int PRIMARY KEY, v text)`,
			afterSlot: `INSERT INTO t VALUES (1, 'a'); CREATE PUBLICATION pub FOR TABLE t`})
		r.gate.autoAck.Store(true)
		err := r.runToEnd()
		var pe *PreflightError
		if !errors.As(err, &pe) || pe.Check != "publication" || !strings.Contains(pe.Msg, "the slot was created before the publication") {
			t.Fatalf("unexpected result of Run; got %v; want a publication PreflightError about the slot's age", err)
		}
		if r.gate.count() != 0 {
			t.Fatalf("events arrived although the slot cannot decode them with the publication")
		}
	})
}

// TestGapDetection: whenever changes may be lost between our position and what the
// server can send, Run stops with a GapError and never streams on.
func TestGapDetection(t *testing.T) {
	gap := func(t *testing.T, err error, reason string) {
		t.Helper()
		var ge *GapError
		if !errors.As(err, &ge) || !strings.Contains(ge.Reason, reason) {
			t.Fatalf("unexpected result of Run; got %v; want a GapError saying %q", err, reason)
		}
	}
	t.Run("slot missing", func(t *testing.T) {
		checkLeaks(t)
		r := newRig(t, rigOptions{options: func(o *Options, start lsn.LSN) { o.Checkpoint = start }})
		r.db.Exec(`SELECT pg_drop_replication_slot('slot')`)
		gap(t, r.runToEnd(), "the slot no longer exists")
	})
	t.Run("confirmed_flush ahead of the checkpoint", func(t *testing.T) {
		checkLeaks(t)
		r := newRig(t, rigOptions{options: func(o *Options, start lsn.LSN) { o.Checkpoint = start }})
		r.insert(1, 1)
		r.db.Exec(`SELECT pg_replication_slot_advance('slot', pg_current_wal_lsn())`)
		gap(t, r.runToEnd(), "is ahead of our checkpoint")
		if r.gate.count() != 0 {
			t.Fatalf("events arrived from a slot ahead of the checkpoint")
		}
	})
	t.Run("system identifier changed", func(t *testing.T) {
		checkLeaks(t)
		r := newRig(t, rigOptions{options: func(o *Options, _ lsn.LSN) { o.SystemID = "1234" }})
		r.insert(1, 1)
		gap(t, r.runToEnd(), "this is a different cluster")
		if r.gate.count() != 0 {
			t.Fatalf("events arrived from another cluster")
		}
	})
	t.Run("slot dropped while reconnecting", func(t *testing.T) {
		checkLeaks(t)
		r := newRig(t, rigOptions{options: func(o *Options, _ lsn.LSN) { o.ReconnectInitial, o.ReconnectMax = time.Second, 2*time.Second }})
		r.gate.autoAck.Store(true)
		r.run()
		r.insert(1, 1)
		r.waitEvents(1)
		// End the walsender and drop the slot before the session is back (it may be
		// back first: then again).
		waitUntil(t, "the slot to be dropped", r.endStreamAndDropSlot)
		gap(t, r.wait(time.Minute), "the slot was dropped while the service was reconnecting")
	})
}

// endStreamAndDropSlot ends the walsender streaming the slot, then drops the slot; it
// reports false when the session took the slot again in between.
func (r *rig) endStreamAndDropSlot() bool {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := r.db.Server.Exec(ctx, r.db.Name, `SELECT pg_terminate_backend(active_pid, 10000) FROM pg_replication_slots
WHERE slot_name = 'slot' AND active_pid IS NOT NULL`)
	if err != nil {
		r.t.Fatal(err)
	}
	return r.db.Server.Exec(ctx, r.db.Name, `SELECT pg_drop_replication_slot('slot')`) == nil
}

// TestSlotInvalidated: PostgreSQL invalidates the slot for max_slot_wal_keep_size
// while the session is stopped (preflight), and while it streams with an event
// unacknowledged (the walsender is ended, and the check before reconnecting finds
// wal_status = lost). Either way Run ends with a GapError.
func TestSlotInvalidated(t *testing.T) {
	srv := ownServer(t, map[string]string{"max_slot_wal_keep_size": "1MB"})
	t.Run("while stopped", func(t *testing.T) {
		checkLeaks(t)
		r := newRig(t, rigOptions{server: srv, setup: `CREATE TABLE t (id int PRIMARY KEY, v text); CREATE PUBLICATION pub FOR TABLE t;
CREATE TABLE filler (id int, payload text)`})
		r.insert(1, 1)
		r.invalidate()
		err := r.runToEnd()
		var ge *GapError
		if !errors.As(err, &ge) || !strings.Contains(ge.Reason, "the slot was invalidated (wal_status = lost)") {
			t.Fatalf("unexpected result of Run; got %v; want a GapError for the invalidated slot", err)
		}
	})
	t.Run("while streaming", func(t *testing.T) {
		checkLeaks(t)
		r := newRig(t, rigOptions{server: srv, setup: `CREATE TABLE t (id int PRIMARY KEY, v text); CREATE PUBLICATION pub FOR TABLE t;
CREATE TABLE filler (id int, payload text)`})
		r.run()
		r.insert(1, 1)
		r.waitEvents(1) // never acknowledged: the slot stays where it started
		r.invalidate()
		err := r.wait(time.Minute)
		var ge *GapError
		if !errors.As(err, &ge) || !strings.Contains(ge.Reason, "invalidated (wal_status = lost) while the service was reconnecting") {
			t.Fatalf("unexpected result of Run; got %v; want a GapError for the slot invalidated while streaming", err)
		}
	})
}

// invalidate writes WAL into the unpublished table filler and checkpoints until
// PostgreSQL invalidates the slot for max_slot_wal_keep_size.
func (r *rig) invalidate() {
	r.t.Helper()
	for range 8 {
		r.db.Exec(`INSERT INTO filler SELECT g, repeat('x', 1000) FROM generate_series(1, 8000) g`)
		r.db.Exec(`SELECT pg_switch_wal()`)
		r.db.Exec(`CHECKPOINT`)
		if pgtest.QueryValue[string](r.db, `SELECT coalesce(wal_status, '') FROM pg_replication_slots WHERE slot_name = 'slot'`) == "lost" {
			return
		}
	}
	r.t.Fatal("the slot is not invalidated after writing WAL past max_slot_wal_keep_size")
}

// TestSilentConnectionTimeout silences the replication connection in a proxy: nothing
// arrives, nothing leaves, and the socket stays open. The session takes the
// connection for dead after receive_timeout, replaces it (once PostgreSQL has ended
// the old walsender for wal_sender_timeout) and streams on, losing nothing.
func TestSilentConnectionTimeout(t *testing.T) {
	checkLeaks(t)
	var proxy *pgtest.Proxy
	r := newRig(t, rigOptions{
		dsn: func(dsn string) string {
			server := fmt.Sprintf("127.0.0.1:%d", pgtest.Shared(t).Port)
			proxy = pgtest.StartProxy(t, server)
			return withWalSenderTimeout("3s")(strings.Replace(dsn, server, proxy.Addr(), 1))
		},
		options: func(o *Options, _ lsn.LSN) { o.ReceiveTimeout = 1500 * time.Millisecond },
	})
	r.gate.autoAck.Store(true)
	r.run()
	r.insert(1, 1)
	r.waitEvents(1)
	pid := r.walsender()
	if n := proxy.FreezeReplication(true, true); n == 0 {
		t.Fatal("no replication connection went through the proxy")
	}
	r.insert(2, 2)
	evs := r.waitEvents(2)
	if id(evs[1]) != "2" {
		t.Fatalf("unexpected event after the silent connection; got id %s; want 2", id(evs[1]))
	}
	if n := r.sess.Status().Reconnects; n == 0 || !strings.Contains(r.log.String(), "no message from the server for") {
		t.Fatalf("the session did not replace the silent connection for its silence (%d reconnects):\n%s", n, r.log)
	}
	if now := r.walsender(); now == pid || now == 0 {
		t.Fatalf("the slot is not streamed by a new walsender (pid %d, now %d)", pid, now)
	}
}
