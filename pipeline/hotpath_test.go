package pipeline_test

import (
	"context"
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/fraiseql/fraiseql-observers/decoder"
	"github.com/fraiseql/fraiseql-observers/lsn"
	"github.com/fraiseql/fraiseql-observers/pipeline"
	"github.com/fraiseql/fraiseql-observers/sinks"
	"github.com/fraiseql/fraiseql-observers/sinks/file"
)

// hotPath is the service's hot path with the default features on: the pgoutput
// decoder, the pipeline with dedup and the row cache, one observer of every operation
// of the table with a file action (batches of 100), and a watermark acknowledging.
// It replays the captured "mixed" stream (testdata/pgoutput/mixed.bin: 1000 row
// changes of the benchmark table in 10 transactions) with its LSNs moved forward on
// each pass, so that every pass is new to the stream, the dedup and the row cache.
type hotPath struct {
	tb     testing.TB
	frames []frame
	dec    *decoder.Decoder
	wm     *lsn.Watermark[lsn.LSN]
	p      *pipeline.Pipeline
	stop   func()
	pass   uint64
	events int // per pass
	evs    []*decoder.Event
	last   lsn.LSN
}

type frame struct {
	at   lsn.LSN
	data []byte
}

func newHotPath(tb testing.TB, fsync string) *hotPath {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join("..", "testdata", "pgoutput", "mixed.bin"))
	if err != nil {
		tb.Fatal(err)
	}
	h := &hotPath{tb: tb}
	for len(b) >= 12 {
		n := int(binary.BigEndian.Uint32(b[8:]))
		h.frames = append(h.frames, frame{lsn.LSN(binary.BigEndian.Uint64(b)), b[12 : 12+n]})
		b = b[12+n:]
	}
	sink, err := file.New(context.Background(), file.Config{Path: filepath.Join(tb.TempDir(), "out.jsonl"), Fsync: fsync,
		Batch: sinks.Batch{BatchSize: 100}}, sinks.Deps{})
	if err != nil {
		tb.Fatal(err)
	}
	dedup, _ := pipeline.NewDedup(100_000)
	rows, err := pipeline.NewRowCache(16<<20, nil)
	if err != nil {
		tb.Fatal(err)
	}
	h.wm = lsn.NewWatermark(lsn.CompareLSNs)
	h.wm.Reset(0)
	ops := []decoder.Op{decoder.OpInsert, decoder.OpUpdate, decoder.OpDelete}
	h.p, err = pipeline.New(pipeline.Options{Acker: h.wm, Dedup: dedup, RowCache: rows, Logger: zerolog.Nop(),
		Observers: []*pipeline.Observer{{Name: "all", Schema: "public", Table: "events", Ops: ops,
			Actions: []*pipeline.Action{{ID: "all.0", Type: "file", Sink: sink, Concurrency: 10, BatchSize: 100}}}}})
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.p.Run(ctx) }()
	h.stop = func() {
		cancel()
		if err := <-done; err != nil {
			tb.Error(err)
		}
		dedup.Close()
		rows.Close()
	}
	h.dec = decoder.New(decoder.Options{KeyColumns: func(rel *decoder.Relation) []string { return []string{"id"} }})
	h.evs = make([]*decoder.Event, 0, 8)
	h.run() // the first pass decodes the Relation and grows every buffer
	h.events = 0
	for _, f := range h.frames {
		switch decoder.Kind(f.data[0]) {
		case decoder.KindInsert, decoder.KindUpdate, decoder.KindDelete:
			h.events++
		}
	}
	return h
}

// shift is how far each pass moves the stream's LSNs forward.
const shift = 1 << 32

// run sends the stream through once and returns when every event is settled: each
// transaction's events are pushed at its commit, as the session does.
func (h *hotPath) run() {
	h.pass++
	off := h.pass * shift
	var batch []*decoder.Event
	var tickets []lsn.Ticket
	for _, f := range h.frames {
		data := f.data
		switch decoder.Kind(data[0]) {
		case decoder.KindBegin, decoder.KindCommit:
			data = shiftLSNs(data, off)
		}
		evs, _, err := h.dec.Decode(f.at+lsn.LSN(off), data, h.evs[:0])
		if err != nil {
			h.tb.Fatal(err)
		}
		for _, ev := range evs {
			batch = append(batch, ev)
			tickets = append(tickets, h.wm.Dispatch(ev.ID.Commit))
		}
		if decoder.Kind(data[0]) == decoder.KindCommit {
			for h.p.Full() {
				<-h.p.Ready()
			}
			h.p.Push(batch, tickets)
			batch, tickets = nil, nil
			h.last = f.at + lsn.LSN(off)
			h.wm.Ack(h.wm.Dispatch(h.last))
		}
	}
	deadline := time.Now().Add(time.Minute)
	for {
		if got, _ := h.wm.Acked(); got >= h.last {
			return
		}
		if time.Now().After(deadline) {
			h.tb.Fatalf("pass %d not settled", h.pass)
		}
		time.Sleep(100 * time.Microsecond)
	}
}

// shiftLSNs returns a copy of a Begin or Commit message with its LSNs moved by off.
func shiftLSNs(data []byte, off uint64) []byte {
	out := append([]byte(nil), data...)
	add := func(at int) { binary.BigEndian.PutUint64(out[at:], binary.BigEndian.Uint64(out[at:])+off) }
	if decoder.Kind(out[0]) == decoder.KindBegin {
		add(1) // final LSN
	} else {
		add(2)  // commit LSN
		add(10) // end LSN
	}
	return out
}

// BenchmarkHotPath measures decode → route → deliver (file action) → settle per event,
// with fsync never (the CPU of the path) and always (as shipped).
func BenchmarkHotPath(b *testing.B) {
	for _, fsync := range []string{file.FsyncNever, file.FsyncAlways} {
		b.Run("fsync="+fsync, func(b *testing.B) {
			h := newHotPath(b, fsync)
			defer h.stop()
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i += h.events {
				h.run()
			}
			b.StopTimer()
			b.ReportMetric(float64(h.events*int(h.pass-1))/b.Elapsed().Seconds(), "events/s")
		})
	}
}

// maxAllocsPerEvent pins the allocations of the hot path per event (decode, route,
// dedup, row cache, per-row queues, file action, settlement), counted over all
// goroutines. It is a ceiling a little above what was measured when it was set
// (hot path at 2026-12-03: see docs/performance.md); lower it when the path gets
// cheaper, and never raise it without saying why.
const maxAllocsPerEvent = 11

func TestHotPathAllocations(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts differ under the race detector")
	}
	h := newHotPath(t, file.FsyncNever)
	defer h.stop()
	per := testing.AllocsPerRun(20, h.run) / float64(h.events)
	t.Logf("%.2f allocations per event", per)
	if per > maxAllocsPerEvent {
		t.Fatalf("the hot path allocates %.2f times per event; the pinned ceiling is %d", per, maxAllocsPerEvent)
	}
}
