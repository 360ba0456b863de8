package transport

import (
	"hash/fnv"
	"strconv"

	"github.com/fraiseql/fraiseql-observers/decoder"
)

// Partition returns the partition of ev among n: a stable hash (FNV-1a, 32 bits) of
// the schema, table and the replica identity key values of the row, so every change
// of one row goes to one partition, in commit order. An event without a key is
// hashed by its table (a logical message by its prefix). The hash never changes
// between versions: readers and executors of different versions agree.
func Partition(ev *decoder.Event, n int) int {
	if n <= 1 {
		return 0
	}
	h := fnv.New32a()
	switch {
	case ev.Op == decoder.OpMessage && ev.Message != nil:
		h.Write([]byte("\x00msg\x00"))
		h.Write([]byte(ev.Message.Prefix))
	default:
		h.Write([]byte(ev.Schema))
		h.Write([]byte{'.'})
		h.Write([]byte(ev.Table))
		h.Write([]byte{0})
		if ev.Key != nil {
			for _, v := range ev.Key.Values {
				h.Write(v)
				h.Write([]byte{0})
			}
		}
	}
	return int(h.Sum32() % uint32(n))
}

// Subject returns the subject of partition p: <prefix>.<p>.
func Subject(prefix string, p int) string { return prefix + "." + strconv.Itoa(p) }
