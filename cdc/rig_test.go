package cdc

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/rs/zerolog"
	"go.uber.org/goleak"

	"github.com/fraiseql/fraiseql-observers/decoder"
	"github.com/fraiseql/fraiseql-observers/internal/pgtest"
	"github.com/fraiseql/fraiseql-observers/lsn"
)

func TestMain(m *testing.M) { pgtest.Main(m, pgtest.Options{}) }

// checkLeaks fails t if goroutines started during it are still running when it ends
// (after every cleanup registered later has run). Call it first.
func checkLeaks(t *testing.T) {
	t.Helper()
	before := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, before) })
}

// gate is a consumer the test drives: it keeps every event it is handed, acknowledges
// only when told (or at once with autoAck), and reports itself full while closed.
type gate struct {
	wm      *lsn.Watermark[lsn.LSN]
	ready   chan struct{}
	full    atomic.Bool
	autoAck atomic.Bool

	mu      sync.Mutex
	evs     []*decoder.Event
	tickets []lsn.Ticket
	acked   []bool
}

func newGate(wm *lsn.Watermark[lsn.LSN]) *gate {
	return &gate{wm: wm, ready: make(chan struct{}, 1)}
}

func (g *gate) Push(evs []*decoder.Event, tickets []lsn.Ticket) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for i, ev := range evs {
		g.evs = append(g.evs, ev)
		g.tickets = append(g.tickets, tickets[i])
		g.acked = append(g.acked, false)
	}
	if g.autoAck.Load() {
		g.ackLocked(func(*decoder.Event) bool { return true })
	}
}

func (g *gate) Full() bool             { return g.full.Load() }
func (g *gate) Ready() <-chan struct{} { return g.ready }

// open makes the gate take events again and acknowledge them at once.
func (g *gate) open() {
	g.autoAck.Store(true)
	g.ack(func(*decoder.Event) bool { return true })
	g.full.Store(false)
	select {
	case g.ready <- struct{}{}:
	default:
	}
}

// ack acknowledges the events kept so far for which match is true.
func (g *gate) ack(match func(*decoder.Event) bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.ackLocked(match)
}

func (g *gate) ackLocked(match func(*decoder.Event) bool) {
	for i, ev := range g.evs {
		if !g.acked[i] && match(ev) {
			g.wm.Ack(g.tickets[i])
			g.acked[i] = true
		}
	}
}

// events returns the events handed over so far, in order.
func (g *gate) events() []*decoder.Event {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]*decoder.Event(nil), g.evs...)
}

func (g *gate) count() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.evs)
}

// ackedConfirmer confirms the ack watermark, as the service does without checkpoints.
type ackedConfirmer struct{ wm *lsn.Watermark[lsn.LSN] }

func (c ackedConfirmer) Durable() lsn.LSN {
	p, _ := c.wm.Acked()
	return p
}

// rig is one replication session against a database of its own on a real server:
// table t published by pub, streamed through slot "slot" into a gate.
type rig struct {
	t     *testing.T
	db    *pgtest.DB
	dsn   string // what the session connects to
	pool  *pgxpool.Pool
	wm    *lsn.Watermark[lsn.LSN]
	gate  *gate
	sess  *Session
	start lsn.LSN // the slot's consistent point
	log   *syncBuffer

	cancel context.CancelFunc
	done   chan error
	ended  bool
	runErr error
}

type rigOptions struct {
	server *pgtest.Server // default: the shared one
	// setup runs before the slot is created; default: table t published by pub.
	setup string
	// dsn maps the database's DSN to the one the session uses (a proxy, options).
	dsn func(string) string
	// afterSlot runs after the slot is created.
	afterSlot string
	// options adjusts the session's options; start is the slot's consistent point.
	options func(o *Options, start lsn.LSN)
}

// newRig prepares the database, the slot and the session; start runs it.
func newRig(t *testing.T, ro rigOptions) *rig {
	t.Helper()
	srv := ro.server
	if srv == nil {
		srv = pgtest.Shared(t)
	}
	db := pgtest.NewDBOn(t, srv)
	if ro.setup == "" {
		ro.setup = `CREATE TABLE t (id int PRIMARY KEY, v text); CREATE PUBLICATION pub FOR TABLE t`
	}
	r := &rig{t: t, db: db, dsn: db.DSN(), wm: lsn.NewWatermark(lsn.CompareLSNs), log: &syncBuffer{}}
	db.Exec(ro.setup)
	var err error
	if r.start, err = lsn.Parse(db.CreateSlot("slot")); err != nil {
		t.Fatal(err)
	}
	if ro.afterSlot != "" {
		db.Exec(ro.afterSlot)
	}
	if ro.dsn != nil {
		r.dsn = ro.dsn(r.dsn)
	}
	cc, err := pgx.ParseConfig(r.dsn)
	if err != nil {
		t.Fatal(err)
	}
	r.pool = pgtest.Pool(t, r.dsn)
	r.gate = newGate(r.wm)
	opts := Options{DB: r.pool, ConnConfig: cc, Slot: "slot", Publication: "pub",
		StatusInterval: 200 * time.Millisecond, ReconnectInitial: 100 * time.Millisecond, ReconnectMax: 500 * time.Millisecond,
		Logger: zerolog.New(io.MultiWriter(zerolog.NewTestWriter(t), r.log)).Level(zerolog.InfoLevel)}
	if ro.options != nil {
		ro.options(&opts, r.start)
	}
	if r.sess, err = New(opts, r.wm, r.gate, ackedConfirmer{r.wm}); err != nil {
		t.Fatal(err)
	}
	return r
}

// run starts the session; it is stopped when the test ends.
func (r *rig) run() {
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel, r.done = cancel, make(chan error, 1)
	go func() { r.done <- r.sess.Run(ctx) }()
	r.t.Cleanup(func() {
		cancel()
		if err := r.wait(time.Minute); err != nil && !r.ended {
			r.t.Errorf("Run returned %v after cancel; want nil", err)
		}
	})
}

// wait returns what Run returned, failing the test if it keeps running longer than d.
func (r *rig) wait(d time.Duration) error {
	r.t.Helper()
	if r.ended {
		return r.runErr
	}
	select {
	case err := <-r.done:
		r.ended, r.runErr = true, err
		return err
	case <-time.After(d):
		r.t.Fatalf("Run still running after %v (last error %q)", d, r.sess.Status().LastError)
		return nil
	}
}

// exited reports whether Run returned, without waiting.
func (r *rig) exited() bool {
	if r.ended {
		return true
	}
	select {
	case err := <-r.done:
		r.ended, r.runErr = true, err
		return true
	default:
		return false
	}
}

// runToEnd runs the session and returns what Run returns (within a minute).
func (r *rig) runToEnd() error {
	r.run()
	return r.wait(time.Minute)
}

// confirmed returns the slot's confirmed_flush_lsn as the server has it.
func (r *rig) confirmed() lsn.LSN {
	r.t.Helper()
	p, err := lsn.Parse(r.db.SlotConfirmedFlush("slot"))
	if err != nil {
		r.t.Fatal(err)
	}
	return p
}

// walsender returns the PID of the walsender streaming the slot (0 when none).
func (r *rig) walsender() int32 {
	return pgtest.QueryValue[int32](r.db, `SELECT coalesce(active_pid, 0) FROM pg_replication_slots WHERE slot_name = 'slot'`)
}

// currentWAL returns pg_current_wal_lsn().
func (r *rig) currentWAL() lsn.LSN {
	r.t.Helper()
	p, err := lsn.Parse(pgtest.QueryValue[string](r.db, `SELECT pg_current_wal_lsn()::text`))
	if err != nil {
		r.t.Fatal(err)
	}
	return p
}

// replyTime returns when the client sent the last status update the walsender of the
// slot processed (pg_stat_replication.reply_time), or the Unix epoch.
func (r *rig) replyTime() time.Time {
	return time.UnixMicro(pgtest.QueryValue[int64](r.db, `SELECT coalesce((extract(epoch FROM max(reply_time)) * 1e6)::bigint, 0)
FROM pg_stat_replication WHERE pid = (SELECT active_pid FROM pg_replication_slots WHERE slot_name = 'slot')`))
}

// waitReplies waits until the walsender has processed n status updates sent after now
// (each sent after the previous one was processed): whatever the first one reported
// is in the slot once this returns, for n ≥ 2.
func (r *rig) waitReplies(n int) {
	r.t.Helper()
	mark := time.Now()
	for i := range n {
		waitUntil(r.t, fmt.Sprintf("status update %d of %d to reach the server", i+1, n), func() bool {
			if rt := r.replyTime(); rt.After(mark) {
				mark = rt
				return true
			}
			return false
		})
	}
}

// insert commits one transaction inserting ids from..to into t.
func (r *rig) insert(from, to int) {
	r.t.Helper()
	r.db.Exec(`INSERT INTO t SELECT g, 'v' || g FROM generate_series($1::int, $2::int) g`, from, to)
}

// waitEvents waits until the gate holds n events.
func (r *rig) waitEvents(n int) []*decoder.Event {
	r.t.Helper()
	waitUntil(r.t, fmt.Sprintf("%d events", n), func() bool {
		if r.exited() {
			r.t.Fatalf("Run returned %v while events were awaited", r.runErr)
		}
		return r.gate.count() >= n
	})
	evs := r.gate.events()
	if len(evs) != n {
		r.t.Fatalf("unexpected number of events; got %d; want %d", len(evs), n)
	}
	return evs
}

// id returns the id column of an event's new row.
func id(ev *decoder.Event) string {
	v, _ := ev.New.Get("id")
	return string(v)
}

// syncBuffer collects the session's log lines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
