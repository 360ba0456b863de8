package snapshot

import (
	"context"
	"strconv"
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
