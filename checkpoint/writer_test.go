package checkpoint

import (
	"context"
	"testing"
	"time"

	"github.com/fraiseql/fraiseql-observers/lsn"
)

func TestWriterDurableOnlyAfterWrite(t *testing.T) {
	ctx := context.Background()
	db := newPoolDB(t)
	store := NewStore(db, "public", "s", "l")
	if err := store.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := store.AcquireEpoch(ctx); err != nil {
		t.Fatal(err)
	}
	wm := lsn.NewWatermark(lsn.CompareLSNs)
	wm.Reset(100)
	w := NewWriter(WriterOptions{Store: store, Slot: wm.Acked, SystemID: func() string { return "7" }, Initial: 50, Interval: time.Hour})
	if got := w.Durable(); got != 50 {
		t.Fatalf("unexpected initial durable position %v", got)
	}
	tk := wm.Dispatch(200)
	wm.Ack(tk)
	if got := w.Durable(); got != 50 {
		t.Fatalf("durable moved before a write: %v", got)
	}
	if err := w.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if got := w.Durable(); got != 200 {
		t.Fatalf("unexpected durable position after a write; got %v; want 200", got)
	}
	st, err := store.Load(ctx)
	if err != nil || st.Slot != 200 || st.SystemID != "7" {
		t.Fatalf("unexpected stored state %+v, %v", st, err)
	}
}
