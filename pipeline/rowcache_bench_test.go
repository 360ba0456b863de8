package pipeline

import (
	"encoding/json"
	"runtime"
	rtmetrics "runtime/metrics"
	"strconv"
	"strings"
	"testing"

	"github.com/fraiseql/fraiseql-observers/decoder"
	"github.com/fraiseql/fraiseql-observers/lsn"
)

// BenchmarkRowCache measures the row cache alone on the benchmark table's rows (a
// bigint key, ~100 bytes of text, an int, a timestamp, ~200 bytes of jsonb): UPDATEs
// sent with the key only (REPLICA IDENTITY DEFAULT), each completed from the cache's
// image of the row, over rows numerous enough to fill a 16 MiB cache. It reports the
// share of the CPU the garbage collector took during the run (gc-%): the cache's
// entries stay live, so their pointers are what every collection has to mark. heap-MiB
// is the live heap the cache holds once every row has an image.
func BenchmarkRowCache(b *testing.B) {
	rel := &decoder.Relation{ID: 7, Namespace: "public", Name: "events", ReplicaIdentity: 'd',
		Names: []string{"id", "body", "n", "at", "payload"}}
	body := json.RawMessage(strconv.Quote(strings.Repeat("b", 100)))
	at := json.RawMessage(`"2026-12-03T17:10:00.123456+00:00"`)
	payload := json.RawMessage(`{"k":"` + strings.Repeat("p", 190) + `"}`)
	const rows = 30_000 // about 13 MiB of images
	keys := make([]byte, 0, rows*6)
	for i := range rows {
		keys = strconv.AppendInt(keys, int64(i), 10)
		keys = append(keys, ' ')
	}
	keyAt := make([][2]int32, rows) // offsets into keys: no slice per row kept live
	for i, off := 0, 0; i < rows; i++ {
		end := off + strings.IndexByte(string(keys[off:]), ' ')
		keyAt[i] = [2]int32{int32(off), int32(end)}
		off = end + 1
	}
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	heap0 := ms.HeapAlloc
	rc, err := NewRowCache(16<<20, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer rc.Close()
	event := func(op decoder.Op, i, n int) *decoder.Event {
		k := json.RawMessage(keys[keyAt[i][0]:keyAt[i][1]])
		ev := &decoder.Event{ID: lsn.Position{Commit: lsn.LSN(1000 + n/100), Ord: uint32(n%100 + 1)}, Op: op,
			Schema: "public", Table: "events", RelationID: 7, Relation: rel,
			Key: &decoder.Row{Names: rel.Names[:1], Values: []json.RawMessage{k}},
			New: &decoder.Row{Names: rel.Names, Values: []json.RawMessage{k, body, json.RawMessage(strconv.Itoa(n)), at, payload}}}
		return ev
	}
	for i := range rows {
		rc.apply(event(decoder.OpInsert, i, i))
	}
	runtime.GC()
	runtime.ReadMemStats(&ms)
	live := float64(ms.HeapAlloc-heap0) / (1 << 20)
	samples := []rtmetrics.Sample{{Name: "/cpu/classes/gc/total:cpu-seconds"}, {Name: "/cpu/classes/total:cpu-seconds"}}
	rtmetrics.Read(samples)
	gc0, all0 := samples[0].Value.Float64(), samples[1].Value.Float64()
	hits0 := rc.Stats().Hits
	b.ReportAllocs()
	b.ResetTimer()
	for n := range b.N {
		ev := event(decoder.OpUpdate, (n*7919)%rows, n)
		if f, ok := rc.apply(ev); ok {
			f.complete(ev)
		}
	}
	b.StopTimer()
	rtmetrics.Read(samples)
	gc, all := samples[0].Value.Float64()-gc0, samples[1].Value.Float64()-all0
	if all > 0 {
		b.ReportMetric(100*gc/all, "gc-%")
	}
	b.ReportMetric(float64(rc.Stats().Hits-hits0)/float64(b.N), "hits/op")
	b.ReportMetric(live, "heap-MiB") // the cache's live heap after the rows were inserted
}
