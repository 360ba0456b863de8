package decoder

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/fraiseql/fraiseql-observers/internal/pgtest"
)

// TestBuiltinTypeOIDs checks the hard-coded type table against pg_type.
func TestBuiltinTypeOIDs(t *testing.T) {
	db := pgtest.NewDB(t)
	conn := db.Conn()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, b := range builtin {
		var name string
		var array uint32
		err := conn.QueryRow(ctx, "SELECT typname::text, typarray::oid::int8 FROM pg_type WHERE oid = $1", b.oid).Scan(&name, &array)
		if err != nil {
			t.Fatalf("type %d (%s): %v", b.oid, b.name, err)
		}
		if name != b.name || array != b.array {
			t.Fatalf("unexpected pg_type row for %d; got %s with array %d; want %s with array %d", b.oid, name, array, b.name, b.array)
		}
		var delim string
		if err := conn.QueryRow(ctx, "SELECT typdelim::text FROM pg_type WHERE oid = $1", b.oid).Scan(&delim); err != nil || delim != "," {
			t.Fatalf("type %s: unexpected array delimiter %q (%v)", b.name, delim, err)
		}
	}
}

// TestBinaryMatchesText streams the same changes in text and in binary format (for the
// types whose binary form the decoder reads) and expects identical events.
func TestBinaryMatchesText(t *testing.T) {
	db := pgtest.NewDB(t)
	db.Exec(`CREATE TABLE bin (id int8 PRIMARY KEY, b bool, i2 int2, i4 int4, o oid, f4 float4, f8 float8,
		t text, vc varchar(10), bp char(4), nm name, by bytea, j json, jb jsonb, u uuid)`)
	db.CreatePublication("pub")
	db.CreateSlot("text_slot")
	db.CreateSlot("bin_slot")
	floats := []string{"0", "'-0'", "0.1", "1.5", "1e15", "1e14", "123456.789", "1e-5", "0.0001", "5e-324", "1.7976931348623157e308", "'NaN'", "'Infinity'", "'-Infinity'", "1234567", "3.4028235e+38", "1.17549435e-38"}
	floats4 := []string{"0", "'-0'", "0.1", "1.5", "1e15", "1e5", "123456.789", "1e-5", "0.0001", "1e-45", "3.4028235e+38", "'NaN'", "'Infinity'", "'-Infinity'", "1234567", "999999", "1.17549435e-38"}
	var rows []string
	for i, f := range floats {
		rows = append(rows, fmt.Sprintf(`(%d, %t, %d, %d, %d, %s, %s, 'tëxt %d', 'v', 'ab', 'nm', '\x00ff', '{"a" : [1, 2]}', '{"b": 1.50}', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11')`,
			i, i%2 == 0, -i, i*1000, i, floats4[i], f, i))
	}
	db.Exec("INSERT INTO bin VALUES " + strings.Join(rows, ", "))
	db.Exec("INSERT INTO bin (id) VALUES (1000)")
	db.Exec("UPDATE bin SET t = 'changed' WHERE id = 1")
	_, text := decodeAll(t, readSlot(t, db, "text_slot", "pub", ""), Options{})
	binFrames := readSlot(t, db, "bin_slot", "pub", "", "binary", "true")
	sawBinary := false
	for _, f := range binFrames {
		if m, err := Parse(f.data); err == nil {
			if ins, ok := m.(*Insert); ok && ins.New.Columns[0].Kind == TupleBinary {
				sawBinary = true
			}
		}
	}
	if !sawBinary {
		t.Fatalf("the binary stream holds no binary values")
	}
	_, binary := decodeAll(t, binFrames, Options{})
	compareLines(t, binary, text)
}
