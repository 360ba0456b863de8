package snapshot

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"testing"

	"github.com/fraiseql/fraiseql-observers/decoder"
	"github.com/fraiseql/fraiseql-observers/internal/pgtest"
)

// TestReadEqualsStreamedInsert inserts rows of many types while the slot streams, then
// snapshots the table: every row's READ event holds exactly the JSON of its streamed
// INSERT. The rows hold NULLs, edge values (NaN, infinities, BC dates, empty arrays and
// strings, control characters, multi-byte text) and 100 kB texts stored out of line
// (STORAGE EXTERNAL: in the TOAST table, uncompressed), which the READ holds whole.
// The connections use a time zone with a 45-minute offset.
func TestReadEqualsStreamedInsert(t *testing.T) {
	db := pgtest.NewDB(t)
	db.Exec(`CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE DOMAIN posint AS int CHECK (VALUE > 0);
CREATE TYPE pair AS (a int, b text);
CREATE TABLE t (
	id bigint PRIMARY KEY, b boolean, i2 smallint, i4 int, i8 bigint, f4 real, f8 double precision, n numeric, n2 numeric(12,4),
	m money, c char(5), vc varchar(10), tx text, by bytea, d date, tm time, ttz timetz, ts timestamp, tstz timestamptz,
	iv interval, u uuid, js json, jb jsonb, ip inet, net cidr, mac macaddr, pt point, bx box, ia int[], ta text[], i2d int[][],
	e mood, dm posint, cp pair, r int4range, tsr tstzrange, bt bit(4), vb varbit, tsv tsvector, big text);
ALTER TABLE t ALTER big SET STORAGE EXTERNAL;
CREATE PUBLICATION pub FOR TABLE t;`)
	db.CreateSlot("s")
	h := startHarness(t, db, harnessOptions{chunkSize: 2, runtimeParams: map[string]string{"TimeZone": "Asia/Kathmandu"}})
	db.Exec(`INSERT INTO t VALUES
	(1, true, 32767, -2147483648, 9223372036854775807, 1.5, 0.1, 123.4500, 1.2345, 12.34, 'ab', 'varchar', 'plain text', '\x00ff10',
	 '2024-02-29', '13:45:00.123456', '13:45:00+05:30', '2024-02-29 13:45:00.123456', '2024-02-29 13:45:00.123456+01:30',
	 '1 year 2 mons 3 days 04:05:06.789', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '{"b": [1, 2.50], "a": "x"}',
	 '{"b": [1, 2.50], "a": "x", "n": null, "u": "\u00e9"}', '192.168.0.1/24', '10.0.0.0/8', '08:00:2b:01:02:03', '(1.5,-2)',
	 '((0,0),(1,1))', '{1,NULL,3}', ARRAY['a b', 'c"d', NULL, '', 'e\f', 'NULL', '{x}'], '{{1,2},{3,4}}', 'happy', 7, ROW(1, 'x y'),
	 '[1,10)', '[2024-01-01,2024-02-01)', B'1010', B'101', 'a fat cat sat', (SELECT string_agg(md5(g::text), '') FROM generate_series(1, 3200) g)),
	(2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
	 NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
	(3, false, -32768, 0, -1, 'NaN', '-Infinity', 'NaN', -0.0001, -1.00, '', '', E'quote" back\\ nl\n tab\t é 日本 🙂 ctl\x01', '',
	 '0044-03-15 BC', '24:00:00', '23:59:59.999999-12:00', '-infinity', 'infinity', '-178000000 years', '00000000-0000-0000-0000-000000000000',
	 '[]', '{}', '::1', '::/0', 'ff:ff:ff:ff:ff:ff', '(0,0)', '((-1,-1),(1,1))', '{}', '{}', '{{NULL}}', 'sad', 1, ROW(NULL, NULL),
	 'empty', '(,)', B'0000', B'', '', repeat(E'\u00e9\U0001F642', 20000)),
	(4, true, 1, 1, 1, 'Infinity', 1e-300, 'Infinity', 99999999.9999, -92233720368547758.08, 'x', 'x', 'x', '\x', '5874897-12-31',
	 '00:00:00', '00:00:00+15:59', '294276-12-31 23:59:59.999999', '4713-01-01 00:00:00+00 BC', '-1 days +23:59:59.999999',
	 'ffffffff-ffff-ffff-ffff-ffffffffffff', '"just a string"', '[1e400]', 'fe80::1/64', '2001:db8::/32', '00:00:00:00:00:00',
	 '(1e300,-1e-300)', '((1,2),(3,4))', '{-1}', '{"\\"}', '{{1},{2}}', 'ok', 2147483647, ROW(-1, ''), '[,5)', '(,)', B'1111', B'1',
	 'x:1A y:2B', NULL)`)
	toast := pgtest.QueryValue[string](db, `SELECT reltoastrelid::regclass::text FROM pg_class WHERE oid = 't'::regclass`)
	if n := pgtest.QueryValue[int64](db, `SELECT count(*) FROM `+toast); n < 100 {
		t.Fatalf("the 100 kB texts are not out of line: %d chunks in %s", n, toast)
	}
	h.catchUp() // the INSERTs are delivered before the snapshot starts
	info, err := h.mgr.Start(context.Background(), Request{Table: "public.t"})
	must(t, err)
	if done := h.waitDone(info.ID); done.State != StateDone || done.RowsSent != 4 {
		t.Fatalf("unexpected end: %s, %d rows sent; want done, 4: %s", done.State, done.RowsSent, done.Error)
	}
	h.catchUp()
	h.sink.mu.Lock()
	defer h.sink.mu.Unlock()
	for k := 1; k <= 4; k++ {
		evs := h.sink.byKey[strconv.Itoa(k)]
		if len(evs) != 2 || evs[0].op != decoder.OpInsert || evs[1].op != decoder.OpRead {
			t.Fatalf("row %d: unexpected events %v; want INSERT, READ", k, evs)
		}
		if ins, read := evs[0].new, evs[1].new; read != ins {
			i := 0
			for i < min(len(ins), len(read)) && ins[i] == read[i] {
				i++
			}
			t.Errorf("row %d: the READ differs from the streamed INSERT at byte %d:\nREAD   ...%.200s\nINSERT ...%.200s", k, i, read[i:], ins[i:])
		}
	}
	for _, k := range []int{1, 3} {
		big, err := json.Marshal(pgtest.QueryValue[string](db, `SELECT big FROM t WHERE id = `+strconv.Itoa(k)))
		must(t, err)
		if read := h.sink.byKey[strconv.Itoa(k)][1].new; len(big) < 100000 || !strings.Contains(read, `"big":`+string(big)) {
			t.Errorf("row %d: the READ lacks the whole out-of-line text (%d bytes of JSON)", k, len(big))
		}
	}
}
