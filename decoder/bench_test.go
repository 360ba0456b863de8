package decoder

import (
	"runtime"
	"testing"
	"time"
)

// benchMessage returns the first message of kind k in a captured stream and the frames
// before it.
func benchMessage(b *testing.B, stream string, k Kind) ([]frame, frame) {
	b.Helper()
	frames := readStream(b, stream)
	for i, f := range frames {
		if Kind(f.data[0]) == k {
			return frames[:i], f
		}
	}
	b.Fatalf("stream %s has no %v message", stream, k)
	return nil, frame{}
}

// BenchmarkDecode decodes one message of each kind, taken from the captured streams
// (the "mixed" stream's table: bigint key, ~100 bytes of text, an int, a timestamptz
// and ~200 bytes of jsonb).
func BenchmarkDecode(b *testing.B) {
	for _, bc := range []struct {
		name   string
		stream string
		kind   Kind
	}{
		{"Insert", "mixed", KindInsert},
		{"Update", "mixed", KindUpdate},
		{"Delete", "mixed", KindDelete},
		{"Relation", "mixed", KindRelation},
		{"Truncate", "ops", KindTruncate},
		{"Message", "ops", KindMessage},
	} {
		b.Run(bc.name, func(b *testing.B) {
			before, msg := benchMessage(b, bc.stream, bc.kind)
			d := primed(b, before)
			evs := make([]*Event, 0, 4)
			b.ReportAllocs()
			b.SetBytes(int64(len(msg.data)))
			for b.Loop() {
				if _, _, err := d.Decode(msg.walStart, msg.data, evs[:0]); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	b.Run("Begin/Commit", func(b *testing.B) {
		frames := readStream(b, "mixed")
		_, begin := benchMessage(b, "mixed", KindBegin)
		_, commit := benchMessage(b, "mixed", KindCommit)
		d := primed(b, frames[:0])
		b.ReportAllocs()
		for b.Loop() {
			if _, _, err := d.Decode(begin.walStart, begin.data, nil); err != nil {
				b.Fatal(err)
			}
			if _, _, err := d.Decode(commit.walStart, commit.data, nil); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkDecodeMixed decodes the whole captured "mixed" stream (transactions of 100
// inserts, updates and deletes) and reports the cost per event.
func BenchmarkDecodeMixed(b *testing.B) {
	frames := readStream(b, "mixed")
	d := New(Options{})
	evs := make([]*Event, 0, 4)
	size := 0
	for _, f := range frames {
		size += len(f.data)
	}
	var events int
	var before, after runtime.MemStats
	b.ReportAllocs()
	b.SetBytes(int64(size))
	runtime.ReadMemStats(&before)
	start := time.Now()
	for b.Loop() {
		for _, f := range frames {
			out, _, err := d.Decode(f.walStart, f.data, evs[:0])
			if err != nil {
				b.Fatal(err)
			}
			events += len(out)
		}
	}
	elapsed := time.Since(start)
	runtime.ReadMemStats(&after)
	if events > 0 {
		b.ReportMetric(float64(after.Mallocs-before.Mallocs)/float64(events), "allocs/event")
		b.ReportMetric(float64(elapsed.Nanoseconds())/float64(events), "ns/event")
	}
}

// BenchmarkRead builds the event of the row of BenchmarkDecode/Insert with
// Assembler.Read, as a snapshot reader would.
func BenchmarkRead(b *testing.B) {
	before, msg := benchMessage(b, "mixed", KindInsert)
	d := primed(b, before)
	m, err := Parse(msg.data)
	if err != nil {
		b.Fatal(err)
	}
	ins := m.(*Insert)
	rel := d.Relation(ins.RelationID)
	values := make([][]byte, len(ins.New.Columns))
	for i, c := range ins.New.Columns {
		if c.Kind == TupleText {
			values[i] = c.Data
		}
	}
	a := NewAssembler(Options{})
	a.Begin(Begin{FinalLSN: 0x1000})
	b.ReportAllocs()
	b.SetBytes(int64(len(msg.data)))
	for b.Loop() {
		if _, err := a.Read(rel, values); err != nil {
			b.Fatal(err)
		}
	}
}
