package snapshot

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/rs/zerolog"

	"github.com/fraiseql/fraiseql-observers/cdc"
	"github.com/fraiseql/fraiseql-observers/checkpoint"
	"github.com/fraiseql/fraiseql-observers/decoder"
	"github.com/fraiseql/fraiseql-observers/internal/pgtest"
	"github.com/fraiseql/fraiseql-observers/lsn"
	"github.com/fraiseql/fraiseql-observers/pipeline"
)

func TestMain(m *testing.M) { pgtest.Main(m, pgtest.Options{}) }

// delivered is one event as the recording sink got it.
type delivered struct {
	id  lsn.Position
	op  decoder.Op
	new string // the JSON of New ("null" for a DELETE)
}

// recordSink records every delivery per key (the first key column's JSON).
type recordSink struct {
	mu    sync.Mutex
	byKey map[string][]delivered
	n     int
	// block, when set, makes Deliver of the events it selects wait until the
	// delivery is cancelled (a sink that stopped answering).
	block func(ev *decoder.Event) bool
}

func newRecordSink() *recordSink { return &recordSink{byKey: map[string][]delivered{}} }

func (s *recordSink) Deliver(ctx context.Context, ev *decoder.Event) error {
	if s.block != nil && s.block(ev) {
		<-ctx.Done()
		return ctx.Err()
	}
	k := "?"
	if ev.Key != nil && ev.Key.Len() > 0 {
		k = string(ev.Key.Values[0])
	} else if ev.Old != nil {
		k = string(ev.Old.Values[0])
	}
	s.mu.Lock()
	s.byKey[k] = append(s.byKey[k], delivered{id: ev.ID, op: ev.Op, new: string(ev.New.AppendJSON(nil))})
	s.n++
	s.mu.Unlock()
	return nil
}

// reads returns the READ events delivered, by key.
func (s *recordSink) reads() map[string][]delivered {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string][]delivered{}
	for k, evs := range s.byKey {
		for _, d := range evs {
			if d.op == decoder.OpRead {
				out[k] = append(out[k], d)
			}
		}
	}
	return out
}

type ackedConfirmer struct{ wm *lsn.Watermark[lsn.LSN] }

func (c ackedConfirmer) Durable() lsn.LSN {
	p, _ := c.wm.Acked()
	return p
}

// harness runs the service's parts in process: a replication session on slot s of
// publication pub with the Manager as its interceptor, a pipeline with one observer
// of public.t (INSERT, UPDATE, DELETE and READ) and the Manager.
type harness struct {
	t    *testing.T
	db   *pgtest.DB
	pool *pgxpool.Pool
	wm   *lsn.Watermark[lsn.LSN]
	pipe *pipeline.Pipeline
	mgr  *Manager
	sink *recordSink
	stop func()
}

type harnessOptions struct {
	chunkSize int
	rps       float64
	sink      *recordSink
	observers func(sink pipeline.Sink) []*pipeline.Observer
	afterRead func(no int64)
	// maxInFlight is the pipeline's byte budget, the Manager's too (default 16 MiB).
	maxInFlight int64
	// pipeline, when set, wraps the pipeline the Manager sees.
	pipeline func(Pipeline) Pipeline
	// runtimeParams are session settings of the replication and snapshot connections.
	runtimeParams map[string]string
}

func startHarness(t *testing.T, db *pgtest.DB, o harnessOptions) *harness {
	t.Helper()
	ctx := context.Background()
	h := &harness{t: t, db: db, pool: pgtest.Pool(t, db.DSN()), wm: lsn.NewWatermark(lsn.CompareLSNs), sink: o.sink}
	if h.sink == nil {
		h.sink = newRecordSink()
	}
	cps := checkpoint.NewStore(h.pool, "public", "s", "test")
	if err := cps.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	epoch, err := cps.AcquireEpoch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	observers := []*pipeline.Observer{{Name: "o", Schema: "public", Table: "t",
		Ops:     []decoder.Op{decoder.OpInsert, decoder.OpUpdate, decoder.OpDelete, decoder.OpRead},
		Actions: []*pipeline.Action{{ID: "o.a", Type: "test", Sink: h.sink, Concurrency: 4, OnFailure: pipeline.FailureLog}}}}
	if o.observers != nil {
		observers = o.observers(h.sink)
	}
	dedup, err := pipeline.NewDedup(1 << 20)
	if err != nil {
		t.Fatal(err)
	}
	log := zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)
	if os.Getenv("SNAPSHOT_TEST_LOG") != "" {
		log = log.Level(zerolog.DebugLevel)
	}
	if o.maxInFlight == 0 {
		o.maxInFlight = 16 << 20
	}
	h.pipe, err = pipeline.New(pipeline.Options{Observers: observers, Acker: h.wm, Dedup: dedup, MaxInFlightBytes: o.maxInFlight, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	cc, err := pgx.ParseConfig(db.DSN())
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range o.runtimeParams {
		cc.RuntimeParams[k] = v
	}
	var pipe Pipeline = h.pipe
	if o.pipeline != nil {
		pipe = o.pipeline(pipe)
	}
	h.mgr, err = New(Options{ConnConfig: cc, Pool: h.pool, Slot: "s", Publication: "pub", ListenerID: "test", Epoch: func() int64 { return epoch },
		ChunkSize: o.chunkSize, RowsPerSecond: o.rps, MaxInFlightBytes: o.maxInFlight, Pipeline: pipe, Settled: h.wm, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	h.mgr.afterRead = o.afterRead
	var sess *cdc.Session
	h.mgr.opts.Streaming = func() bool { return sess.Status().Connected }
	if err := h.mgr.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	var ignore []string
	for _, tbl := range append([]string{"observer_checkpoints", "observer_epochs"}, Tables...) {
		ignore = append(ignore, "public."+tbl)
	}
	sess, err = cdc.New(cdc.Options{DB: h.pool, ConnConfig: cc, Slot: "s", Publication: "pub", StatusInterval: time.Second, IgnoreTables: ignore,
		Interceptor: h.mgr, Logger: log}, h.wm, h.pipe, ackedConfirmer{h.wm})
	if err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	run := func(name string, f func(context.Context) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(rctx); err != nil && rctx.Err() == nil {
				t.Errorf("%s: %v", name, err)
			}
		}()
	}
	run("pipeline", h.pipe.Run)
	run("session", sess.Run)
	run("snapshots", h.mgr.Run)
	var once sync.Once
	h.stop = func() {
		once.Do(func() {
			cancel()
			wg.Wait()
			dedup.Close()
		})
	}
	t.Cleanup(h.stop)
	return h
}

// waitDone waits until snapshot id has ended and returns it.
func (h *harness) waitDone(id int64) Info {
	h.t.Helper()
	deadline := time.Now().Add(5 * time.Minute)
	for time.Now().Before(deadline) {
		info, err := h.mgr.Get(context.Background(), id)
		if err != nil {
			h.t.Fatal(err)
		}
		if info.finished() {
			return info
		}
		time.Sleep(20 * time.Millisecond)
	}
	h.t.Fatalf("snapshot %d did not finish", id)
	return Info{}
}

// catchUp waits until every change committed so far is settled: it writes a message
// and waits until the session's watermark passed it.
func (h *harness) catchUp() {
	h.t.Helper()
	l := pgtest.QueryValue[string](h.db, `SELECT pg_logical_emit_message(false, 'test.end', '')::text`)
	at, err := lsn.Parse(l)
	if err != nil {
		h.t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Minute)
	for time.Now().Before(deadline) {
		if got, _ := h.wm.Acked(); got > at {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	got, _ := h.wm.Acked()
	h.t.Fatalf("the stream did not settle past %s; settled %s", at, got)
}

// rowsJSON reads public.t in key order and returns each row's JSON as an event's New
// would hold it, by key (the first column's JSON).
func rowsJSON(t *testing.T, db *pgtest.DB, snapshotName string) map[string]string {
	t.Helper()
	ctx := context.Background()
	conn := db.Conn()
	tx, err := conn.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if snapshotName != "" {
		if _, err := tx.Exec(ctx, "SET TRANSACTION SNAPSHOT '"+snapshotName+"'"); err != nil {
			t.Fatal(err)
		}
	}
	tbl, err := describe(ctx, conn, "pub", "public", "t")
	if err != nil {
		t.Fatal(err)
	}
	rel, err := tbl.relation()
	if err != nil {
		t.Fatal(err)
	}
	r := newReader(conn, tbl, rel, "", 1<<30, 0)
	asm := decoder.NewAssembler(decoder.Options{})
	out := map[string]string{}
	rr := tx.Conn().PgConn().ExecParams(ctx, r.first, nil, nil, nil, nil)
	for rr.NextRow() {
		ev, err := asm.Read(rel, rr.Values())
		if err != nil {
			t.Fatal(err)
		}
		out[string(ev.Key.Values[0])] = string(ev.New.AppendJSON(nil))
	}
	if _, err := rr.Close(); err != nil {
		t.Fatal(err)
	}
	return out
}

// oracleChanges decodes every change the oracle slot holds: the stream as PostgreSQL
// sends it, consumed independently of the service.
func oracleChanges(t *testing.T, db *pgtest.DB, slot string) []*decoder.Event {
	t.Helper()
	ctx := context.Background()
	conn := db.Conn()
	rows, err := conn.Query(ctx, `SELECT lsn::text, data FROM pg_logical_slot_get_binary_changes($1, NULL, NULL, 'proto_version', '1', 'publication_names', 'pub')`, slot)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	d := decoder.New(decoder.Options{})
	var out []*decoder.Event
	for rows.Next() {
		var l string
		var data []byte
		if err := rows.Scan(&l, &data); err != nil {
			t.Fatal(err)
		}
		at, err := lsn.Parse(l)
		if err != nil {
			t.Fatal(err)
		}
		evs, _, err := d.Decode(at, data, nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, ev := range evs {
			if ev.Table == "t" {
				out = append(out, ev)
			}
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// keyOf returns the JSON of a streamed event's key (first column).
func keyOf(ev *decoder.Event) string {
	if ev.Key != nil && ev.Key.Len() > 0 {
		return string(ev.Key.Values[0])
	}
	return string(ev.Old.Values[0])
}

func itoa(i int64) string { return strconv.FormatInt(i, 10) }

// must fails the test on err.
func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

var _ = json.Valid
var _ = errors.New
var _ = fmt.Sprint
