package pipeline

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"hash/maphash"
)

// rowStore is the row cache's storage: every entry (a key and the values of one row
// image) is encoded into large byte chunks, one entry after the other, and an index maps
// the hash of each key to the place of its latest entry. It holds no pointer per entry:
// the chunks are a few pointer-free byte slices and the index a map of integers, so the
// garbage collector never scans the entries, however many there are.
//
// The chunks form a ring: new entries are appended to the newest chunk; when the byte
// budget would be exceeded, the oldest chunk is dropped (its entries evicted) and its
// memory reused. An entry replaced or deleted stays in its chunk as garbage until that
// chunk is dropped. The budget counts the chunks' capacity and indexEntryBytes per
// index entry, so the store's memory stays within about max bytes.
//
// A lookup compares the full key stored in the entry: two keys with the same hash never
// return each other's row; the later one replaces the earlier in the index, which then
// is a miss. rowStore is not safe for concurrent use (the router alone uses it).
type rowStore struct {
	max       int64 // budget: chunks' capacity plus index entries
	chunkSize int
	entryMax  int // the largest entry stored; larger ones are rejected
	chunks    [][]byte
	first     uint32 // sequence number of chunks[0]
	spare     []byte // an evicted chunk kept for reuse
	index     map[uint64]uint64
	hash      func(key []byte) uint64
	used      int64 // capacity of chunks and spare

	evicted, rejected uint64
}

// indexEntryBytes is what one index entry costs at most: a map[uint64]uint64 slot is 16
// bytes plus a control byte, in tables that are between 7/16 and 7/8 full.
const indexEntryBytes = 40

// entryHeader is an entry's fixed part: its length (uint32) and its key's hash (uint64).
const entryHeader = 12

func newRowStore(maxBytes int64) *rowStore {
	cs := min(max(maxBytes/16, 4<<10), 1<<20)
	s := &rowStore{max: maxBytes, chunkSize: int(cs), entryMax: int(min(maxBytes/2, 1<<30)),
		index: map[uint64]uint64{}}
	seed := maphash.MakeSeed()
	s.hash = func(key []byte) uint64 { return maphash.Bytes(seed, key) }
	return s
}

// bytes returns the memory the store counts against its budget.
func (s *rowStore) bytes() int64 { return s.used + indexEntryBytes*int64(len(s.index)) }

func (s *rowStore) len() int { return len(s.index) }

// reset drops every entry; the index's memory is released too.
func (s *rowStore) reset() {
	for len(s.chunks) > 0 {
		s.drop()
	}
	s.first, s.spare, s.used = 0, nil, 0
	s.index = map[uint64]uint64{}
}

// entry returns the encoded entry the index has for hash h, or nil.
func (s *rowStore) entry(h uint64) []byte {
	loc, ok := s.index[h]
	if !ok {
		return nil
	}
	c := s.chunks[uint32(loc>>32)-s.first]
	off := uint32(loc)
	n := binary.LittleEndian.Uint32(c[off:])
	return c[off : off+n]
}

// entryKey splits an entry into its key and the encoded values after it.
func entryKey(e []byte) (key, rest []byte) {
	e = e[entryHeader:]
	n, w := binary.Uvarint(e)
	e = e[w:]
	return e[:n], e[n:]
}

// get returns a copy of the values stored under key, in one allocation of their own,
// and false when key has no entry. want is the number of values the caller expects; an
// entry with another number is a miss.
func (s *rowStore) get(key []byte, want int) ([]json.RawMessage, bool) {
	e := s.entry(s.hash(key))
	if e == nil {
		return nil, false
	}
	k, rest := entryKey(e)
	if !bytes.Equal(k, key) {
		return nil, false // another key with the same hash
	}
	n, w := binary.Uvarint(rest)
	if int(n) != want {
		return nil, false
	}
	rest = rest[w:]
	// The values' bytes: the rest minus the length prefixes, counted first.
	size, p := 0, rest
	for range n {
		l, w := binary.Uvarint(p)
		if l > 0 {
			size += int(l - 1)
			p = p[w+int(l-1):]
		} else {
			p = p[w:]
		}
	}
	buf := make([]byte, 0, size)
	vals := make([]json.RawMessage, n)
	for i := range vals {
		l, w := binary.Uvarint(rest)
		rest = rest[w:]
		if l == 0 {
			continue // nil
		}
		start := len(buf)
		buf = append(buf, rest[:l-1]...)
		vals[i] = buf[start:len(buf):len(buf)]
		rest = rest[l-1:]
	}
	return vals, true
}

// del forgets key's entry, if it has one.
func (s *rowStore) del(key []byte) {
	h := s.hash(key)
	if e := s.entry(h); e != nil {
		if k, _ := entryKey(e); bytes.Equal(k, key) {
			delete(s.index, h)
		}
	}
}

// put stores vals under key, replacing its entry. An entry larger than the budget
// allows is rejected, and then key has no entry (never an older one).
func (s *rowStore) put(key []byte, vals []json.RawMessage) {
	size := entryHeader + uvarintLen(uint64(len(key))) + len(key) + uvarintLen(uint64(len(vals)))
	for _, v := range vals {
		size += uvarintLen(uint64(len(v))+1) + len(v)
	}
	if size > s.entryMax {
		s.rejected++
		s.del(key)
		return
	}
	h := s.hash(key)
	if len(s.chunks) == 0 || cap(s.chunks[len(s.chunks)-1])-len(s.chunks[len(s.chunks)-1]) < size {
		s.grow(size)
	}
	last := len(s.chunks) - 1
	c := s.chunks[last]
	off := len(c)
	c = binary.LittleEndian.AppendUint32(c, uint32(size))
	c = binary.LittleEndian.AppendUint64(c, h)
	c = binary.AppendUvarint(c, uint64(len(key)))
	c = append(c, key...)
	c = binary.AppendUvarint(c, uint64(len(vals)))
	for _, v := range vals {
		if v == nil {
			c = append(c, 0)
			continue
		}
		c = binary.AppendUvarint(c, uint64(len(v))+1)
		c = append(c, v...)
	}
	s.chunks[last] = c
	s.index[h] = uint64(s.first+uint32(last))<<32 | uint64(off)
	// A new index entry may have taken the budget over: release the spare chunk, then
	// drop the oldest chunks, never the one just written.
	for s.bytes() > s.max {
		if s.spare != nil {
			s.used -= int64(cap(s.spare))
			s.spare = nil
			continue
		}
		if len(s.chunks) <= 1 {
			break
		}
		s.drop()
	}
}

// grow starts a new chunk with room for an entry of size bytes, dropping the oldest
// chunks while the budget would be exceeded. The chunk last dropped is reused when it
// is large enough; until then it counts against the budget.
func (s *rowStore) grow(size int) {
	n := max(s.chunkSize, size)
	for {
		if s.spare != nil && cap(s.spare) >= n {
			break
		}
		if s.spare != nil { // too small for this entry: release it
			s.used -= int64(cap(s.spare))
			s.spare = nil
		}
		if len(s.chunks) == 0 || s.bytes()+int64(n) <= s.max {
			break
		}
		s.drop()
	}
	if uint64(s.first)+uint64(len(s.chunks)) >= 1<<32-1 {
		s.reset() // sequence numbers would wrap: start again (after 4 billion chunks)
	}
	var c []byte
	if s.spare != nil {
		c, s.spare = s.spare[:0], nil // already counted
	} else {
		c = make([]byte, 0, n)
		s.used += int64(cap(c))
	}
	s.chunks = append(s.chunks, c)
}

// drop evicts the oldest chunk: the index entries that point into it are deleted. The
// chunk's memory is kept for reuse (and counted) when it has the usual size and no
// other is kept.
func (s *rowStore) drop() {
	c := s.chunks[0]
	for off := 0; off < len(c); {
		n := int(binary.LittleEndian.Uint32(c[off:]))
		h := binary.LittleEndian.Uint64(c[off+4:])
		if loc, ok := s.index[h]; ok && loc == uint64(s.first)<<32|uint64(off) {
			delete(s.index, h)
			s.evicted++
		}
		off += n
	}
	s.chunks[0] = nil
	s.chunks = s.chunks[1:]
	s.first++
	if cap(c) == s.chunkSize && s.spare == nil {
		s.spare = c[:0]
	} else {
		s.used -= int64(cap(c))
	}
}

func uvarintLen(x uint64) int {
	n := 1
	for x >= 0x80 {
		x >>= 7
		n++
	}
	return n
}
