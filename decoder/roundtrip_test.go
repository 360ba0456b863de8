package decoder

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fraiseql/fraiseql-observers/internal/pgtest"
)

// roundTripTypes lists, per SQL type, values whose decoded JSON must cast back to an
// equal value with the same text: SELECT $1::type = original.
var roundTripTypes = []struct {
	typ    string
	values []string // SQL literals
}{
	{"bool", []string{"true", "false"}},
	{"int2", []string{"-32768", "32767", "0"}},
	{"int4", []string{"-2147483648", "2147483647"}},
	{"int8", []string{"-9223372036854775808", "9223372036854775807"}},
	{"oid", []string{"0", "4294967295"}},
	{"float4", []string{"'NaN'", "'Infinity'", "'-Infinity'", "'-0'", "1.17549435e-38", "3.4028235e+38", "0.1", "123456", "1234567"}},
	{"float8", []string{"'NaN'", "'Infinity'", "'-Infinity'", "'-0'", "5e-324", "1.7976931348623157e308", "0.1", "1e15", "123456.789", "1e-5"}},
	{"numeric", []string{"'NaN'", "'Infinity'", "'-Infinity'", "0.000001000", "-123.450", "repeat('9', 1000)::numeric", "('0.' || repeat('1', 999))::numeric"}},
	{"numeric(10,3)", []string{"3.14", "-0.001"}},
	{"text", []string{"'plain'", "''", "E'emoji 👍🏽 zwj 👩‍👩‍👧‍👦 combining e\u0301 rtl עברית ltr'", "E'\\u2028 \\u2029 \\uFEFF'",
		"E'quote\" backslash\\\\ tab\\t nl\\n cr\\r ctl\\x01\\x1f'", "'<script>&amp;</script>'", "'NULL'"}},
	{"varchar(20)", []string{"'varchar'"}},
	{"char(5)", []string{"'ab'"}},
	{"name", []string{"'a_name'"}},
	{`"char"`, []string{"'x'"}},
	{"json", []string{`'{"a": "\u0000", "b" : [1, 2.50]}'`, `'"x"'`, `'  [1 ,2]  '`, `'{"dup": 1, "dup": 2}'`, `'{"s": "a b\n"}'`}},
	{"jsonb", []string{`'{"b": 1, "a": {"c": [true, null]}}'`, `'1.50'`, `'"\u00e9"'`}},
	{"uuid", []string{"'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'"}},
	{"bytea", []string{`'\x00'`, `'\x00ff00'`, `'\x'`, `'\xdeadbeef'`}},
	{"date", []string{"'2024-02-29'", "'infinity'", "'-infinity'", "'0044-03-15 BC'", "'5874897-12-31'"}},
	{"time", []string{"'00:00:00'", "'23:59:59.999999'", "'24:00:00'"}},
	{"timetz", []string{"'12:00:00+05:30'", "'00:00:00-03:30'", "'12:00:00+00'", "'01:02:03.5-14'"}},
	{"timestamp", []string{"'2024-01-02 03:04:05.123456'", "'infinity'", "'-infinity'", "'0044-03-15 12:00:00 BC'", "'294276-12-31 23:59:59'"}},
	{"timestamptz", []string{"'2024-01-02 03:04:05.5+00'", "'1850-06-01 00:00:00+00'", "'2024-07-01 12:00:00+00'", "'infinity'", "'0044-03-15 12:00:00+00 BC'"}},
	{"interval", []string{"'1 year 2 mons 3 days 04:05:06.5'", "'-1 mons +2 days -00:00:01'", "'0'", "'178000000 years'"}},
	{"money", []string{"12.34", "-1.5"}},
	{"inet", []string{"'192.168.0.1/24'", "'::1'"}},
	{"cidr", []string{"'10.0.0.0/8'"}},
	{"macaddr", []string{"'08:00:2b:01:02:03'"}},
	{"macaddr8", []string{"'08:00:2b:01:02:03:04:05'"}},
	{"bit(4)", []string{"B'1010'"}},
	{"varbit", []string{"B'101'"}},
	{"xml", []string{`'<a b="c">x &amp; y</a>'`}},
	{"mood", []string{"'happy'"}},
	{"posint", []string{"42"}},
	{"pair", []string{`ROW(1, 'x "y"')`}},
	{"tsvector", []string{"'a fat cat'"}},
	{"int4range", []string{"'[1,5)'"}},
	{"int4[]", []string{"'{1,NULL,3}'", "'{{1,2},{3,4}}'", "'{}'", "'[0:1]={7,8}'", "'{{{1}}}'"}},
	{"text[]", []string{`'{"a b","c,d","q\"uote","back\\slash",NULL,"NULL","",é,"{}"}'`, `E'{"multi\nline"}'`}},
	{"numeric[]", []string{"'{1.50,NaN,-0.001,Infinity}'"}},
	{"float8[]", []string{"'{NaN,Infinity,-Infinity,-0,0.1}'"}},
	{"bool[]", []string{"'{t,f,NULL}'"}},
	{"bytea[]", []string{`ARRAY['\x00'::bytea, '\x', NULL]`}},
	{"timestamptz[]", []string{`'{"2024-01-02 03:04:05+00",infinity,-infinity}'`}},
	{"timestamp[]", []string{`'{"2024-01-02 03:04:05.5"}'`}},
	{"date[]", []string{`'{2024-01-01,"0044-03-15 BC"}'`}},
	// A json value that is the JSON literal null decodes like SQL NULL (documented), so
	// neither it nor 'null'::jsonb elements can round-trip.
	{"jsonb[]", []string{`ARRAY['{"k": [1, {"z": null}]}'::jsonb, '"s"', NULL]`}},
	{"uuid[]", []string{"'{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}'"}},
	{"interval[]", []string{`'{"1 day","-00:00:01"}'`}},
	{"inet[]", []string{"'{10.0.0.1,::1}'"}},
	{"mood[]", []string{"'{sad,happy}'"}},
}

// TestTypeRoundTrip decodes every value of roundTripTypes from a live stream, read in
// several session time zones, and casts the JSON back in SQL.
func TestTypeRoundTrip(t *testing.T) {
	db := pgtest.NewDB(t)
	db.Exec(`CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE DOMAIN posint AS integer CHECK (VALUE > 0);
CREATE TYPE pair AS (a int, b text);`)
	for i, rt := range roundTripTypes {
		db.Exec(fmt.Sprintf("CREATE TABLE rt_%d (id int PRIMARY KEY, v %s)", i, rt.typ))
	}
	db.CreatePublication("pub")
	zones := []string{"UTC", "Asia/Kolkata", "America/St_Johns", "Europe/Amsterdam"}
	for i := range zones {
		db.CreateSlot(fmt.Sprintf("slot_%d", i))
	}
	for i, rt := range roundTripTypes {
		for j, v := range rt.values {
			db.Exec(fmt.Sprintf("INSERT INTO rt_%d VALUES (%d, %s)", i, j, v))
		}
	}
	conn := db.Conn()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	for zi, zone := range zones {
		t.Run(strings.ReplaceAll(zone, "/", "_"), func(t *testing.T) {
			frames := readSlot(t, db, fmt.Sprintf("slot_%d", zi), "pub", "SET TimeZone = '"+zone+"'")
			if _, err := conn.Exec(ctx, "SET TimeZone = '"+zone+"'"); err != nil {
				t.Fatal(err)
			}
			events, _ := decodeAll(t, frames, Options{})
			checked := 0
			for _, e := range events {
				var ti int
				if _, err := fmt.Sscanf(e.Table, "rt_%d", &ti); err != nil {
					t.Fatalf("unexpected table %q", e.Table)
				}
				typ := roundTripTypes[ti].typ
				id, _ := e.New.Get("id")
				v, _ := e.New.Get("v")
				lit, err := sqlText(v, typ)
				if err != nil {
					t.Fatalf("%s value %s: %v", typ, v, err)
				}
				var same bool
				var back, orig string
				q := fmt.Sprintf("SELECT $1::text::%[1]s IS NOT DISTINCT FROM v, ($1::text::%[1]s)::text, v::text FROM rt_%[2]d WHERE id = %[3]s", typ, ti, id)
				if typ == "json" || typ == "xml" { // no equality operator: compare the text
					q = fmt.Sprintf("SELECT true, $1::text::%s::text, v::text FROM rt_%d WHERE id = %s", typ, ti, id)
				}
				if err := conn.QueryRow(ctx, q, lit).Scan(&same, &back, &orig); err != nil {
					t.Fatalf("%s: cast back %s (%q): %v", typ, v, lit, err)
				}
				if typ == "json" {
					orig = string(appendCompactJSON(nil, []byte(orig)))
				}
				if !same || back != orig {
					t.Fatalf("%s: round trip changed the value; decoded %s, cast back to %q; want %q", typ, v, back, orig)
				}
				checked++
			}
			if want := countValues(); checked != want {
				t.Fatalf("unexpected number of values checked; got %d; want %d", checked, want)
			}
		})
	}
}

func countValues() int {
	n := 0
	for _, rt := range roundTripTypes {
		n += len(rt.values)
	}
	return n
}

// sqlText turns a decoded JSON value back into PostgreSQL input text for type typ.
func sqlText(v json.RawMessage, typ string) (string, error) {
	elem, isArray := strings.CutSuffix(typ, "[]")
	if !isArray || v[0] != '[' {
		return scalarText(v, typ)
	}
	var b strings.Builder
	var walk func(v json.RawMessage) error
	walk = func(v json.RawMessage) error {
		if v[0] == '[' {
			var items []json.RawMessage
			if err := json.Unmarshal(v, &items); err != nil {
				return err
			}
			b.WriteByte('{')
			for i, it := range items {
				if i > 0 {
					b.WriteByte(',')
				}
				if err := walk(it); err != nil {
					return err
				}
			}
			b.WriteByte('}')
			return nil
		}
		if string(v) == "null" {
			b.WriteString("NULL")
			return nil
		}
		s, err := scalarText(v, elem)
		if err != nil {
			return err
		}
		b.WriteByte('"')
		b.WriteString(strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s))
		b.WriteByte('"')
		return nil
	}
	err := walk(v)
	return b.String(), err
}

func scalarText(v json.RawMessage, typ string) (string, error) {
	switch {
	case v[0] == '"':
		var s string
		if err := json.Unmarshal(v, &s); err != nil {
			return "", err
		}
		if typ == "bytea" {
			raw, err := base64.StdEncoding.DecodeString(s)
			if err != nil {
				return "", err
			}
			return `\x` + hex.EncodeToString(raw), nil
		}
		if typ == "json" || typ == "jsonb" {
			return string(v), nil // a JSON string value
		}
		return s, nil
	case string(v) == "true" || string(v) == "false":
		return string(v), nil
	case v[0] == '{' || v[0] == '[' || string(v) == "null":
		return string(v), nil
	}
	if _, err := strconv.ParseFloat(string(v), 64); err != nil && !bytes.ContainsAny(v, "0123456789") {
		return "", fmt.Errorf("not a number: %s", v)
	}
	return string(v), nil
}
