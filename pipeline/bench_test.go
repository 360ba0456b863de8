package pipeline

import (
	"context"
	"encoding/json"
	"strconv"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/fraiseql/fraiseql-observers/decoder"
	"github.com/fraiseql/fraiseql-observers/lsn"
)

type nopSink struct{}

func (nopSink) Deliver(context.Context, *decoder.Event) error { return nil }

// BenchmarkPipeline measures routing, per-row queues, delivery to a sink that returns
// at once and acknowledgement, for transactions of 100 events over 1000 rows, with and
// without the dedup and row caches.
func BenchmarkPipeline(b *testing.B) {
	for _, caches := range []bool{false, true} {
		b.Run("caches="+strconv.FormatBool(caches), func(b *testing.B) {
			wm := lsn.NewWatermark(lsn.CompareLSNs)
			wm.Reset(0)
			opts := Options{Acker: wm, Logger: zerolog.Nop(), Observers: []*Observer{{Name: "o", Schema: "public", Table: "t",
				Ops: []decoder.Op{decoder.OpUpdate}, Actions: []*Action{{ID: "o.0", Type: "nop", Sink: nopSink{}, Concurrency: 4}}}}}
			if caches {
				d, _ := NewDedup(100_000)
				rc, _ := NewRowCache(64<<20, nil)
				defer d.Close()
				defer rc.Close()
				opts.Dedup, opts.RowCache = d, rc
			}
			p, err := New(opts)
			if err != nil {
				b.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- p.Run(ctx) }()
			rel := &decoder.Relation{ID: 1, Namespace: "public", Name: "t", Names: []string{"id", "v"}}
			b.ReportAllocs()
			b.ResetTimer()
			var last lsn.LSN
			for i := 0; i < b.N; i += 100 {
				commit := lsn.LSN(1000 * (i/100 + 1))
				batch := make([]*decoder.Event, 0, 100)
				tickets := make([]lsn.Ticket, 0, 100)
				for j := 0; j < 100 && i+j < b.N; j++ {
					k := json.RawMessage(strconv.Itoa((i + j) % 1000))
					ev := &decoder.Event{ID: lsn.Position{Commit: commit, Ord: uint32(j + 1)}, Schema: "public", Table: "t",
						Op: decoder.OpUpdate, RelationID: 1, Relation: rel,
						Key: &decoder.Row{Names: rel.Names[:1], Values: []json.RawMessage{k}},
						New: &decoder.Row{Names: rel.Names, Values: []json.RawMessage{k, json.RawMessage(`"x"`)}}}
					batch = append(batch, ev)
					tickets = append(tickets, wm.Dispatch(commit))
				}
				for p.Full() {
					<-p.Ready()
				}
				p.Push(batch, tickets)
				last = commit + 1
				wm.Ack(wm.Dispatch(last))
			}
			for {
				if got, _ := wm.Acked(); got >= last {
					break
				}
				time.Sleep(time.Millisecond)
			}
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
			cancel()
			<-done
		})
	}
}
