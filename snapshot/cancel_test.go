package snapshot

import (
	"context"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fraiseql/fraiseql-observers/decoder"
	"github.com/fraiseql/fraiseql-observers/internal/pgtest"
	"github.com/fraiseql/fraiseql-observers/pipeline"
)

// waitIdle waits until the Manager runs no snapshot: a cancelled one has settled (its
// job ended after the events it handed on settled).
func (h *harness) waitIdle() {
	h.t.Helper()
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		h.mgr.mu.Lock()
		idle := h.mgr.cur == nil
		h.mgr.mu.Unlock()
		if idle {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	h.t.Fatalf("the snapshot did not stop")
}

// readKeys returns the keys of the READ rows delivered (integers), and fails the test
// on a row delivered more than once.
func readKeys(t *testing.T, s *recordSink) map[int]bool {
	t.Helper()
	out := map[int]bool{}
	for k, evs := range s.reads() {
		n, err := strconv.Atoi(k)
		if err != nil || len(evs) != 1 {
			t.Fatalf("unexpected READ events of row %s: %v", k, evs)
		}
		out[n] = true
	}
	return out
}

// TestCancelRunning cancels a snapshot of 5000 rows in chunks of 100 while it runs:
// while a chunk is read, and while it waits for an action that does not answer. The
// snapshot is cancelled at once; once it settled no chunk was read after the cancel,
// the rows delivered are those of the chunks read before it (a chunk whole or not at
// all; those handed on are delivered, however late), and a new snapshot of the table
// starts and delivers every row.
func TestCancelRunning(t *testing.T) {
	const rows, size = 5000, 100
	setup := func(t *testing.T, sink *recordSink, afterRead func(no int64)) *harness {
		db := pgtest.NewDB(t)
		db.Exec(tableDDL + `INSERT INTO t SELECT g, g, 'row ' || g FROM generate_series(1, ` + strconv.Itoa(rows) + `) g;`)
		db.CreateSlot("s")
		return startHarness(t, db, harnessOptions{chunkSize: size, sink: sink, afterRead: afterRead})
	}
	cancel := func(t *testing.T, h *harness, id int64) {
		t.Helper()
		info, err := h.mgr.Cancel(context.Background(), id)
		must(t, err)
		if info.State != StateCancelled {
			t.Fatalf("unexpected state after cancel; got %s; want %s", info.State, StateCancelled)
		}
	}
	// settled waits until the cancelled snapshot's job ended and the stream settled
	// past a message written after that, and returns the keys of the READ rows.
	settled := func(t *testing.T, h *harness, id int64) map[int]bool {
		t.Helper()
		h.waitIdle()
		h.catchUp()
		if info, err := h.mgr.Get(context.Background(), id); err != nil || info.State != StateCancelled {
			t.Fatalf("unexpected snapshot after the cancel settled: %+v, %v; want it cancelled", info, err)
		}
		return readKeys(t, h.sink)
	}
	// chunks checks that the rows delivered are chunks 1 to n (of size rows each), and
	// of chunk n+1 all rows or none when it was read before the cancel.
	chunks := func(t *testing.T, got map[int]bool, n int, maybeNext bool) {
		t.Helper()
		for k := 1; k <= n*size; k++ {
			if !got[k] {
				t.Fatalf("row %d of chunk %d, handed on before the cancel, was not delivered", k, (k-1)/size+1)
			}
		}
		next := 0
		for k := range got {
			switch {
			case k > (n+1)*size || k > n*size && !maybeNext:
				t.Fatalf("row %d was delivered: it is after the chunks read before the cancel (%d rows)", k, n*size)
			case k > n*size:
				next++
			}
		}
		if next != 0 && next != size {
			t.Fatalf("%d rows of chunk %d delivered; want all %d or none", next, n+1, size)
		}
	}
	// again starts a new snapshot of the table, which must deliver every row.
	again := func(t *testing.T, h *harness, old int64) {
		t.Helper()
		before := h.sink.reads()
		info, err := h.mgr.Start(context.Background(), Request{Table: "public.t"})
		must(t, err)
		if done := h.waitDone(info.ID); done.State != StateDone || done.RowsRead != rows || done.RowsSent != rows {
			t.Fatalf("unexpected end of the snapshot after the cancelled one (%d): %s, %d rows read, %d sent; want done, %d, %d: %s",
				old, done.State, done.RowsRead, done.RowsSent, rows, rows, done.Error)
		}
		h.catchUp()
		after := h.sink.reads()
		for k := 1; k <= rows; k++ {
			s := strconv.Itoa(k)
			if len(after[s]) != len(before[s])+1 {
				t.Fatalf("row %d: %d READ events after the new snapshot, %d before; want one more", k, len(after[s]), len(before[s]))
			}
		}
	}

	t.Run("while a chunk is read", func(t *testing.T) {
		// The job stops after reading chunk 3, before its high watermark, once chunks 1
		// and 2 are delivered; the snapshot is cancelled then.
		sink := newRecordSink()
		var reads atomic.Int64
		var held atomic.Bool
		reached, resume := make(chan struct{}), make(chan struct{})
		var resumeOnce sync.Once
		release := func() { resumeOnce.Do(func() { close(resume) }) }
		h := setup(t, sink, func(no int64) {
			reads.Add(1)
			if no != 3 || !held.CompareAndSwap(false, true) {
				return
			}
			for deadline := time.Now().Add(time.Minute); len(sink.reads()) < 2*size && time.Now().Before(deadline); {
				time.Sleep(5 * time.Millisecond)
			}
			close(reached)
			<-resume
		})
		t.Cleanup(release) // before the harness stops
		info, err := h.mgr.Start(context.Background(), Request{Table: "public.t"})
		must(t, err)
		select {
		case <-reached:
		case <-time.After(time.Minute):
			t.Fatal("chunk 3 was not read")
		}
		cancel(t, h, info.ID)
		release()
		got := settled(t, h, info.ID)
		if n := reads.Load(); n != 3 {
			t.Fatalf("unexpected chunks read until the cancel settled; got %d; want 3", n)
		}
		chunks(t, got, 2, false) // chunk 3, read when the cancel came, is not handed on
		t.Logf("delivered after the cancel settled: %d of %d rows", len(got), rows)
		again(t, h, info.ID)
	})

	t.Run("while waiting for an action", func(t *testing.T) {
		// The action holds every READ row after chunk 1 until released: chunks 2 to 5
		// are handed on and cannot complete, so the job waits with four chunks in
		// flight. Once the action holds all their rows (it has a worker for each), the
		// snapshot is cancelled, and the action released after.
		sink := newRecordSink()
		var reads, held atomic.Int64
		hold := make(chan struct{})
		var holdOnce sync.Once
		release := func() { holdOnce.Do(func() { close(hold) }) }
		sink.block = func(ev *decoder.Event) bool {
			if n, _ := strconv.Atoi(string(ev.Key.Values[0])); ev.Op == decoder.OpRead && n > size {
				held.Add(1)
				<-hold
			}
			return false
		}
		db := pgtest.NewDB(t)
		db.Exec(tableDDL + `INSERT INTO t SELECT g, g, 'row ' || g FROM generate_series(1, ` + strconv.Itoa(rows) + `) g;`)
		db.CreateSlot("s")
		h := startHarness(t, db, harnessOptions{chunkSize: size, sink: sink, afterRead: func(int64) { reads.Add(1) },
			observers: func(sink pipeline.Sink) []*pipeline.Observer {
				return []*pipeline.Observer{{Name: "o", Schema: "public", Table: "t", Ops: []decoder.Op{decoder.OpRead},
					Actions: []*pipeline.Action{{ID: "o.a", Type: "test", Sink: sink, Concurrency: 4 * size, OnFailure: pipeline.FailureLog}}}}
			}})
		t.Cleanup(release) // before the harness stops
		info, err := h.mgr.Start(context.Background(), Request{Table: "public.t"})
		must(t, err)
		for deadline := time.Now().Add(time.Minute); held.Load() < 4*size; {
			if time.Now().After(deadline) {
				t.Fatalf("the action holds %d rows; want %d (chunks 2 to 5)", held.Load(), 4*size)
			}
			time.Sleep(5 * time.Millisecond)
		}
		cancel(t, h, info.ID)
		release()
		got := settled(t, h, info.ID)
		if n := reads.Load(); n != 5 {
			t.Fatalf("unexpected chunks read until the cancel settled; got %d; want 5", n)
		}
		chunks(t, got, 5, false)
		again(t, h, info.ID)
	})
}
