package pipeline

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/fraiseql/fraiseql-observers/decoder"
	"github.com/fraiseql/fraiseql-observers/lsn"
)

func vals(vs ...string) []json.RawMessage {
	out := make([]json.RawMessage, len(vs))
	for i, v := range vs {
		out[i] = json.RawMessage(v)
	}
	return out
}

func sameVals(a, b []json.RawMessage) bool {
	return slices.EqualFunc(a, b, func(x, y json.RawMessage) bool { return string(x) == string(y) && (x == nil) == (y == nil) })
}

// checkBytes checks the store's accounting against what it holds.
func checkBytes(t *testing.T, s *rowStore) {
	t.Helper()
	var held int64
	for _, c := range s.chunks {
		held += int64(cap(c))
	}
	held += int64(cap(s.spare))
	if s.used != held {
		t.Fatalf("unexpected byte count of the chunks; got %d; want %d", s.used, held)
	}
	if got, want := s.bytes(), held+indexEntryBytes*int64(len(s.index)); got != want {
		t.Fatalf("unexpected bytes(); got %d; want %d", got, want)
	}
}

// TestRowStoreHashCollisions makes every key hash alike: a key must never get the
// values of another.
func TestRowStoreHashCollisions(t *testing.T) {
	s := newRowStore(1 << 20)
	s.hash = func([]byte) uint64 { return 7 }
	a, b := []byte("key-a"), []byte("key-b")
	get := func(k []byte, want []json.RawMessage) {
		t.Helper()
		got, ok := s.get(k, 2)
		if want == nil {
			if ok {
				t.Fatalf("unexpected values for %s; got %q; want a miss", k, got)
			}
			return
		}
		if !ok || !sameVals(got, want) {
			t.Fatalf("unexpected values for %s; got %q (%v); want %q", k, got, ok, want)
		}
	}
	s.put(a, vals(`1`, `"a"`))
	get(a, vals(`1`, `"a"`))
	get(b, nil) // same hash, other key: a miss, not a's row
	s.put(b, vals(`2`, `"b"`))
	get(b, vals(`2`, `"b"`))
	get(a, nil) // b took the index entry: a is a miss now
	s.del(a)    // a has no entry: b's must stay
	get(b, vals(`2`, `"b"`))
	s.del(b)
	get(b, nil)
	if s.len() != 0 {
		t.Fatalf("unexpected entries %d; want 0", s.len())
	}
}

func TestRowStoreValues(t *testing.T) {
	s := newRowStore(1 << 20)
	k := []byte("k")
	in := []json.RawMessage{json.RawMessage(`1`), nil, json.RawMessage(``), json.RawMessage(strings.Repeat("x", 300))}
	s.put(k, in)
	got, ok := s.get(k, len(in))
	if !ok || !sameVals(got, in) {
		t.Fatalf("unexpected values; got %q; want %q", got, in)
	}
	if _, ok := s.get(k, 3); ok {
		t.Fatalf("an entry with 4 values served a lookup for 3")
	}
	// The values returned are a copy: changing them changes nothing stored.
	got[0][0] = '9'
	if again, _ := s.get(k, len(in)); string(again[0]) != `1` {
		t.Fatalf("the returned values alias the store: %q", again[0])
	}
	// A newer image replaces the older.
	s.put(k, vals(`2`, `null`, `""`, `{}`))
	if got, _ := s.get(k, 4); !sameVals(got, vals(`2`, `null`, `""`, `{}`)) {
		t.Fatalf("unexpected values after replacing; got %q", got)
	}
}

// TestRowStoreEviction fills a small store many times over: it stays within its
// budget, keeps the newest entries, and every value it returns is the one stored last
// under that key.
func TestRowStoreEviction(t *testing.T) {
	const budget = 64 << 10
	s := newRowStore(budget)
	last := map[string]string{}
	var returned [][]json.RawMessage
	for i := range 20_000 {
		k := strconv.Itoa(i % 5000)
		v := fmt.Sprintf(`"%d-%s"`, i, strings.Repeat("v", i%97))
		s.put([]byte(k), vals(k, v))
		last[k] = v
		if b := s.bytes(); b > budget {
			t.Fatalf("store uses %d bytes after %d puts; budget %d", b, i+1, budget)
		}
		if i%1000 == 0 {
			checkBytes(t, s)
			got, _ := s.get([]byte(k), 2)
			returned = append(returned, got)
		}
	}
	checkBytes(t, s)
	if s.evicted == 0 {
		t.Fatalf("nothing evicted from a %d-byte store after 20000 puts", budget)
	}
	hits := 0
	for k, v := range last {
		got, ok := s.get([]byte(k), 2)
		if !ok {
			continue
		}
		hits++
		if string(got[0]) != k || string(got[1]) != v {
			t.Fatalf("unexpected values for %s; got %q; want [%s %s]", k, got, k, v)
		}
	}
	if hits != s.len() {
		t.Fatalf("unexpected hits %d; want the %d entries of the index", hits, s.len())
	}
	// The newest entry is always kept.
	if got, ok := s.get([]byte("4999"), 2); !ok || string(got[1]) != last["4999"] {
		t.Fatalf("the newest entry was evicted: %q %v", got, ok)
	}
	// Values handed out earlier are not overwritten when their chunk is reused.
	for i, got := range returned {
		if n := i * 1000; !strings.HasPrefix(string(got[1]), `"`+strconv.Itoa(n)+"-") {
			t.Fatalf("values returned for put %d changed after eviction: %q", n, got[1])
		}
	}
	s.reset()
	checkBytes(t, s)
	if s.bytes() != 0 || s.len() != 0 {
		t.Fatalf("unexpected bytes %d and entries %d after reset; want 0", s.bytes(), s.len())
	}
	if _, ok := s.get([]byte("4999"), 2); ok {
		t.Fatalf("entry found after reset")
	}
}

// TestRowStoreTooLarge rejects an image of half the budget or more, and then forgets
// the key's older image instead of serving it.
func TestRowStoreTooLarge(t *testing.T) {
	s := newRowStore(64 << 10)
	k := []byte("k")
	s.put(k, vals(`1`, `"small"`))
	s.put(k, vals(`1`, `"`+strings.Repeat("x", 32<<10)+`"`))
	if s.rejected != 1 {
		t.Fatalf("unexpected rejected %d; want 1", s.rejected)
	}
	if got, ok := s.get(k, 2); ok {
		t.Fatalf("an older image was served after a newer one was rejected: %q", got)
	}
	// Just under the limit: kept, in a chunk of its own.
	s.put(k, vals(`1`, `"`+strings.Repeat("x", 30<<10)+`"`))
	if _, ok := s.get(k, 2); !ok {
		t.Fatalf("an image under half the budget was not kept")
	}
	checkBytes(t, s)
	if s.bytes() > 64<<10 {
		t.Fatalf("store uses %d bytes; budget %d", s.bytes(), 64<<10)
	}
}

// TestRowCacheNeverWrong applies random changes (inserts, updates with and without
// unchanged TOAST columns, key changes, deletes, TRUNCATEs, relation changes) to a
// small cache whose keys' hashes collide often, and checks every image it supplies
// against the latest image of the row in a model: a miss is allowed, a wrong or stale
// value is not.
func TestRowCacheNeverWrong(t *testing.T) {
	for seed := range int64(8) {
		t.Run(strconv.FormatInt(seed, 10), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(uint64(seed), 0))
			rc, err := NewRowCache(16<<10, nil)
			if err != nil {
				t.Fatal(err)
			}
			h := rc.store.hash
			rc.store.hash = func(k []byte) uint64 { return h(k) & 31 } // 32 hashes for 60 rows and their epochs
			rel := &decoder.Relation{ID: 42, Namespace: "public", Name: "orders", ReplicaIdentity: 'd', Names: relOrders.Names}
			model := map[string][3]string{} // key → id, status, doc
			hits := 0
			for n := range 20_000 {
				k := strconv.Itoa(rng.IntN(60))
				status := strconv.Quote(strconv.Itoa(n))
				doc := `{"v":"` + strings.Repeat("d", rng.IntN(300)) + strconv.Itoa(n) + `"}`
				ev := &decoder.Event{ID: lsn.Position{Commit: lsn.LSN(100 + n), Ord: 1}, Schema: "public", Table: "orders",
					RelationID: 42, Relation: rel, Key: &decoder.Row{Names: []string{"id"}, Values: vals(k)}}
				full := &decoder.Row{Names: rel.Names, Values: vals(k, status, doc)}
				var oldKey string
				switch r := rng.IntN(100); {
				case r < 25:
					ev.Op, ev.New = decoder.OpInsert, full
				case r < 55: // update, all columns sent
					ev.Op, ev.New, oldKey = decoder.OpUpdate, full, k
				case r < 75: // update, doc unchanged TOAST
					ev.Op, oldKey = decoder.OpUpdate, k
					ev.New = &decoder.Row{Names: rel.Names[:2], Values: vals(k, status)}
					ev.Unavailable = []string{"doc"}
				case r < 85: // the key changed
					oldKey = strconv.Itoa(rng.IntN(60))
					ev.Op, ev.New, ev.OldKind = decoder.OpUpdate, full, decoder.OldKey
					ev.Old = &decoder.Row{Names: []string{"id"}, Values: vals(oldKey)}
				case r < 97:
					ev.Op, ev.Old, ev.OldKind, oldKey = decoder.OpDelete, ev.Key, decoder.OldKey, k
				case r < 98:
					ev.Op = decoder.OpTruncate
					clear(model)
				default: // ALTER TABLE: a new Relation
					rel = &decoder.Relation{ID: 42, Namespace: "public", Name: "orders", ReplicaIdentity: 'd', Names: relOrders.Names}
					ev.Relation = rel
					clear(model)
					ev.Op, ev.New = decoder.OpInsert, full
				}
				f, ok := rc.apply(ev)
				want, had := model[oldKey]
				if ok {
					hits++
					if !had || string(f.old.Values[1]) != want[1] || string(f.old.Values[2]) != want[2] {
						t.Fatalf("change %d (%v of %s): the cache supplied %q; the row's latest image is %q (known: %v)", n, ev.Op, oldKey, f.old.Values, want, had)
					}
					if f.new != nil && string(f.new.Values[2]) != want[2] {
						t.Fatalf("change %d: unchanged TOAST filled with %s; want %s", n, f.new.Values[2], want[2])
					}
				}
				switch {
				case ev.Op == decoder.OpDelete:
					delete(model, k)
				case ev.Op == decoder.OpUpdate && oldKey != k:
					delete(model, oldKey)
					model[k] = [3]string{k, status, doc}
				case ev.Op == decoder.OpUpdate && ev.Unavailable != nil:
					if ok && f.new != nil {
						model[k] = [3]string{k, status, want[2]}
					} else {
						delete(model, k) // incomplete: the cache forgets the row
					}
				case ev.Op == decoder.OpInsert || ev.Op == decoder.OpUpdate:
					model[k] = [3]string{k, status, doc}
				}
			}
			if hits < 1000 {
				t.Fatalf("only %d hits in 20000 changes: the test does not exercise the cache", hits)
			}
		})
	}
}
