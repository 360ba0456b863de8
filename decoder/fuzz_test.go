package decoder

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"maps"
	"runtime"
	"testing"
)

// fuzzState returns the frames that prime a fuzzed Decoder: every Relation and Type
// message of the captured streams, then a Begin.
func fuzzState(f *testing.F) []frame {
	var prime []frame
	for _, name := range []string{"ops", "types", "identity", "toast", "names", "mixed"} {
		for _, fr := range readStream(f, name) {
			if fr.data[0] == 'R' || fr.data[0] == 'Y' {
				prime = append(prime, fr)
			}
		}
	}
	begin := append([]byte{'B'}, make([]byte, 20)...)
	binary.BigEndian.PutUint64(begin[1:], 0x1000)
	return append(prime, frame{0x1000, begin})
}

// seeds adds every captured message, plus truncated and bit-flipped copies.
func seeds(f *testing.F, add func([]byte)) {
	for _, name := range []string{"ops", "types", "identity", "toast", "names"} {
		for i, fr := range readStream(f, name) {
			add(fr.data)
			add(fr.data[:len(fr.data)/2])
			flipped := append([]byte(nil), fr.data...)
			flipped[(i*7)%len(flipped)] ^= 1 << (i % 8)
			add(flipped)
		}
	}
}

// checkResult asserts what holds for any input: errors are typed, and every event
// encodes as valid JSON.
func checkResult(t *testing.T, evs []*Event, err error) {
	var de *Error
	var ve *ValueError
	var te *TooLargeError
	if err != nil && !errors.As(err, &de) && !errors.As(err, &ve) && !errors.As(err, &te) {
		t.Fatalf("untyped error %T: %v", err, err)
	}
	for _, e := range evs {
		if b := e.AppendJSON(nil); !json.Valid(b) {
			t.Fatalf("event encodes as invalid JSON: %s", b)
		}
	}
}

// allocBound is the most a message of n bytes may make the decoder allocate: events
// are larger than the bytes they come from (a Truncate names a relation in 4 bytes),
// but never by more than a constant factor.
func allocBound(n int) uint64 { return 1<<20 + 512*uint64(n) }

// FuzzDecode decodes one arbitrary message with a Decoder that knows the captured
// relations and is inside a transaction, and parses it statelessly.
func FuzzDecode(f *testing.F) {
	prime := fuzzState(f)
	seeds(f, func(b []byte) { f.Add(b) })
	base := New(Options{KeyColumns: goldenKeyColumns, MaxEventBytes: 1 << 20})
	for _, fr := range prime {
		if _, _, err := base.Decode(fr.walStart, fr.data, nil); err != nil {
			f.Fatal(err)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		d := base.clone()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		evs, _, err := d.Decode(0x2000, data, nil)
		_, perr := Parse(data)
		runtime.ReadMemStats(&after)
		if n := after.TotalAlloc - before.TotalAlloc; n > allocBound(len(data)) {
			t.Fatalf("a %d-byte message allocated %d bytes", len(data), n)
		}
		checkResult(t, evs, err)
		var de *Error
		if perr != nil && !errors.As(perr, &de) {
			t.Fatalf("Parse: untyped error %T: %v", perr, perr)
		}
	})
}

// FuzzDecodeStream decodes a sequence of messages (each prefixed by a 2-byte length)
// with one Decoder, so that transaction state and relation replacement are exercised.
func FuzzDecodeStream(f *testing.F) {
	prime := fuzzState(f)
	for _, name := range []string{"ops", "identity", "names"} {
		var b []byte
		for _, fr := range readStream(f, name) {
			b = binary.BigEndian.AppendUint16(b, uint16(len(fr.data)))
			b = append(b, fr.data...)
		}
		f.Add(b)
	}
	base := New(Options{MaxEventBytes: 1 << 16})
	for _, fr := range prime[:len(prime)-1] {
		if _, _, err := base.Decode(fr.walStart, fr.data, nil); err != nil {
			f.Fatal(err)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		d := base.clone()
		at := uint64(0x2000)
		for len(data) >= 2 {
			n := int(binary.BigEndian.Uint16(data))
			data = data[2:]
			if n > len(data) {
				n = len(data)
			}
			msg := data[:n:n]
			data = data[n:]
			at++
			evs, _, err := d.Decode(lsnOf(at), msg, nil)
			checkResult(t, evs, err)
		}
	})
}

// clone returns a Decoder with the same caches and transaction state and fresh scratch
// space (relations are immutable, so sharing them is safe).
func (d *Decoder) clone() *Decoder {
	c := New(d.opts)
	maps.Copy(c.relations, d.relations)
	maps.Copy(c.types, d.types)
	c.inTx, c.commit = d.inTx, d.commit
	c.asm.begin, c.asm.origin, c.asm.ord = d.asm.begin, d.asm.origin, d.asm.ord
	return c
}

// FuzzRead reads arbitrary values (NUL-separated; a lone 0xFF is NULL) as a row of a
// table of every value kind and checks that Read gives what the stream gives for an
// INSERT of the same values: the same row and key, or the same refusal.
func FuzzRead(f *testing.F) {
	var seed []byte
	for i, v := range typedValues {
		if i > 0 {
			seed = append(seed, 0)
		}
		if v == nil {
			v = []byte{0xFF}
		}
		seed = append(seed, v...)
	}
	f.Add(seed)
	f.Add([]byte("x\x00y"))
	f.Add([]byte("\xff\x00\xff\x00caf\xe9"))
	rel, err := NewRelation(descOf(40, IdentityDefault, typedCols), nil)
	if err != nil {
		f.Fatal(err)
	}
	relMsg := mkRelation(40, "public", "typed", IdentityDefault, typedCols...)
	f.Fuzz(func(t *testing.T, data []byte) {
		values := make([][]byte, len(typedCols))
		tuple := make([]TupleColumn, len(typedCols))
		parts := bytes.SplitN(data, []byte{0}, len(typedCols))
		for i := range values {
			tuple[i] = null
			if i < len(parts) && !bytes.Equal(parts[i], []byte{0xFF}) {
				values[i] = parts[i]
				tuple[i] = TupleColumn{Kind: TupleText, Data: parts[i]}
			}
		}
		d := New(Options{MaxEventBytes: 1 << 12})
		for _, m := range [][]byte{mkBegin(0x500, 1), relMsg} {
			if _, _, err := d.Decode(0x100, m, nil); err != nil {
				t.Fatal(err)
			}
		}
		streamed, _, serr := d.Decode(0x101, mkInsert(40, tuple...), nil)
		a := NewAssembler(Options{MaxEventBytes: 1 << 12})
		a.Begin(Begin{FinalLSN: 0x500, Xid: 1})
		read, rerr := a.Read(rel, values)
		checkResult(t, nil, rerr)
		if (serr == nil) != (rerr == nil) || (serr != nil && serr.Error() != rerr.Error()) {
			t.Fatalf("Read and the stream disagree; read %v; stream %v", rerr, serr)
		}
		if rerr != nil {
			return
		}
		checkResult(t, []*Event{read}, nil)
		if rowJSON(read.New) != rowJSON(streamed[0].New) || rowJSON(read.Key) != rowJSON(streamed[0].Key) {
			t.Fatalf("Read and the stream disagree;\nread   %s\nstream %s", read.JSON(), streamed[0].JSON())
		}
	})
}
