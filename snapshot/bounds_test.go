package snapshot

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fraiseql/fraiseql-observers/decoder"
	"github.com/fraiseql/fraiseql-observers/internal/pgtest"
)

// TestResumeWithAnotherBudgetKeepsIds stops the service in the middle of a backfill
// of 100 kB rows, whose chunks end at an eighth of the pipeline's budget, and starts
// it again with half the budget: the chunks read again end where they ended before
// (the byte bound is the snapshot's, like its chunk size), so their keys, and the ids
// of the rows delivered twice, are the same.
func TestResumeWithAnotherBudgetKeepsIds(t *testing.T) {
	db := pgtest.NewDB(t)
	db.Exec(tableDDL + `ALTER TABLE t ALTER note SET STORAGE EXTERNAL;
	INSERT INTO t SELECT g, g, repeat(md5(g::text), 3200) FROM generate_series(1, 200) g;`)
	db.CreateSlot("s")
	first := newRecordSink()
	first.block = func(ev *decoder.Event) bool { // rows after 50 are never delivered
		n, _ := strconv.Atoi(string(ev.Key.Values[0]))
		return ev.Op == decoder.OpRead && n > 50
	}
	h := startHarness(t, db, harnessOptions{chunkSize: 1000, sink: first, maxInFlight: 16 << 20})
	info, err := h.mgr.Start(context.Background(), Request{Table: "public.t"})
	must(t, err)
	// Rows 1-50 are delivered; the chunks before the one holding row 50 complete, that
	// one cannot. A chunk's rows share the base of their ids.
	lastComplete := func() int {
		reads := first.reads()
		if len(reads) < 50 {
			return -1
		}
		last := 0
		for k := 1; k < 50; k++ {
			if reads[strconv.Itoa(k)][0].id.Commit != reads["50"][0].id.Commit {
				last = k
			}
		}
		return last
	}
	var stored Info
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		if stored, err = h.mgr.store.get(context.Background(), info.ID); err == nil && lastComplete() >= 0 &&
			len(stored.lastKey) == 1 && stored.lastKey[0] == strconv.Itoa(lastComplete()) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	h.stop()
	stored, err = h.mgr.store.get(context.Background(), info.ID)
	must(t, err)
	before := first.reads()
	if stored.State != StateRunning || len(before) != 50 || len(stored.lastKey) != 1 || stored.lastKey[0] != strconv.Itoa(lastComplete()) {
		t.Fatalf("unexpected state before the restart: %s, completed up to row %v, %d rows delivered; want running, %d, 50",
			stored.State, stored.lastKey, len(before), lastComplete())
	}
	t.Logf("before the restart: %d chunks completed, up to row %d", stored.Chunks, lastComplete())
	completed := lastComplete()

	h2 := startHarness(t, db, harnessOptions{chunkSize: 1000, maxInFlight: 8 << 20})
	done := h2.waitDone(info.ID)
	if done.State != StateDone || done.RowsRead != 200 {
		t.Fatalf("unexpected end: %s, %d rows read; want done, 200: %s", done.State, done.RowsRead, done.Error)
	}
	after := h2.sink.reads()
	repeated := 0
	for k := 1; k <= 200; k++ {
		s := strconv.Itoa(k)
		b, a := before[s], after[s]
		switch {
		case len(b)+len(a) == 0:
			t.Fatalf("row %d was never delivered", k)
		case k <= completed && len(a) > 0:
			t.Fatalf("row %d of a completed chunk (up to %d) was read again after the restart", k, completed)
		case len(b) > 0 && len(a) > 0:
			if b[0].id != a[0].id {
				t.Fatalf("row %d delivered again with another id: %s then %s", k, b[0].id, a[0].id)
			}
			repeated++
		}
	}
	if want := 50 - completed; repeated != want || want == 0 {
		t.Fatalf("unexpected rows delivered twice; got %d; want %d (%d-50: the chunk in flight)", repeated, want, completed+1)
	}
}

// TestRateLimit reads 3000 rows in chunks of 100 at 1000 rows per second: a chunk is
// read only once the rows before it are paid for, so the last of the 30 chunks is
// read no sooner than 2.9 s after the first (a lower bound only a broken limiter can
// break; a slow machine only adds to it).
func TestRateLimit(t *testing.T) {
	const rows, size, rps = 3000, 100, 1000
	db := pgtest.NewDB(t)
	db.Exec(tableDDL + `INSERT INTO t SELECT g, g, 'row ' || g FROM generate_series(1, ` + strconv.Itoa(rows) + `) g;`)
	db.CreateSlot("s")
	var mu sync.Mutex
	var first, last time.Time
	h := startHarness(t, db, harnessOptions{chunkSize: size, rps: rps, afterRead: func(no int64) {
		mu.Lock()
		defer mu.Unlock()
		if no == 1 {
			first = time.Now()
		}
		last = time.Now()
	}})
	info, err := h.mgr.Start(context.Background(), Request{Table: "public.t"})
	must(t, err)
	if done := h.waitDone(info.ID); done.State != StateDone || done.RowsSent != rows || done.Chunks != rows/size {
		t.Fatalf("unexpected end: %s, %d rows sent in %d chunks; want done, %d in %d: %s", done.State, done.RowsSent, done.Chunks, rows, rows/size, done.Error)
	}
	mu.Lock()
	defer mu.Unlock()
	want := time.Duration(float64(rows-size) / rps * float64(time.Second))
	if got := last.Sub(first); got < want {
		t.Fatalf("chunks read too fast; the last %s after the first; want at least %s at %d rows/s", got, want, rps)
	} else {
		t.Logf("the last chunk read %s after the first", got)
	}
}

// countingPipeline counts the Manager's looks at the pipeline's in-flight bytes.
type countingPipeline struct {
	Pipeline
	looks atomic.Int64
}

func (p *countingPipeline) InFlightBytes() int64 {
	p.looks.Add(1)
	return p.Pipeline.InFlightBytes()
}

// TestBackpressurePausesReading fills the pipeline past half its budget with live
// changes that the action holds, while the first chunk is read: the next chunk is not
// read however often the Manager looks at the pipeline, and once the action lets go
// the snapshot reads the rest.
func TestBackpressurePausesReading(t *testing.T) {
	const budget = 1 << 20
	db := pgtest.NewDB(t)
	db.Exec(tableDDL + `INSERT INTO t SELECT g, g, 'row ' || g FROM generate_series(1001, 1050) g;`)
	db.CreateSlot("s")
	pool := pgtest.Pool(t, db.DSN())
	sink := newRecordSink()
	hold := make(chan struct{})
	var holdOnce sync.Once
	release := func() { holdOnce.Do(func() { close(hold) }) }
	sink.block = func(ev *decoder.Event) bool {
		if ev.Op == decoder.OpInsert {
			<-hold
		}
		return false
	}
	var pipe *countingPipeline
	var reads, pressed atomic.Int64 // pressed: the looks when the pipeline was filled
	h := startHarness(t, db, harnessOptions{chunkSize: 10, sink: sink, maxInFlight: budget,
		pipeline: func(p Pipeline) Pipeline {
			pipe = &countingPipeline{Pipeline: p}
			return pipe
		},
		afterRead: func(no int64) {
			if reads.Add(1) != 1 {
				return
			}
			// Before chunk 1's high watermark: rows of 50 kB, one at a time, each
			// dispatched before the next, until the pipeline holds half its budget.
			for k := 1; pipe.Pipeline.InFlightBytes() < budget/2; k++ {
				before := pipe.Pipeline.InFlightBytes()
				if _, err := pool.Exec(context.Background(), fmt.Sprintf(`INSERT INTO t VALUES (%d, 0, repeat('x', 50000))`, k)); err != nil || k > 20 {
					t.Errorf("fill the pipeline: row %d, %d bytes in flight: %v", k, before, err)
					return
				}
				for deadline := time.Now().Add(time.Minute); pipe.Pipeline.InFlightBytes() == before && time.Now().Before(deadline); {
					time.Sleep(time.Millisecond)
				}
			}
			pressed.Store(pipe.looks.Load())
		}})
	t.Cleanup(release) // before the harness stops
	info, err := h.mgr.Start(context.Background(), Request{Table: "public.t"})
	must(t, err)
	for deadline := time.Now().Add(time.Minute); reads.Load() <= 1 && (pressed.Load() == 0 || pipe.looks.Load() < pressed.Load()+10); {
		if time.Now().After(deadline) || t.Failed() {
			t.Fatalf("the Manager did not look at the full pipeline: %d looks, %d when it was filled", pipe.looks.Load(), pressed.Load())
		}
		time.Sleep(5 * time.Millisecond)
	}
	inflight := pipe.Pipeline.InFlightBytes()
	if n := reads.Load(); n != 1 || inflight < budget/2 {
		t.Fatalf("unexpected chunks read while the pipeline holds %d bytes of a budget of %d; got %d; want 1", inflight, budget, n)
	}
	t.Logf("chunk 2 not read in %d looks at a pipeline holding %d bytes", pipe.looks.Load()-pressed.Load(), inflight)
	release()
	if done := h.waitDone(info.ID); done.State != StateDone || done.RowsSent != 50 || reads.Load() != 5 {
		t.Fatalf("unexpected end: %s, %d rows sent, %d chunks read; want done, 50, 5: %s", done.State, done.RowsSent, reads.Load(), done.Error)
	}
}
