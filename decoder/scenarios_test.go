package decoder

// bigText is a 10240-character value; with STORAGE EXTERNAL it is stored out of line
// (uncompressed) in the TOAST table, so an UPDATE that leaves it alone sends 'u'.
const bigText = `(SELECT string_agg(md5(i::text || '%s'), '') FROM generate_series(1, 320) i)`

func big(seed string) string { return sprintf(bigText, seed) }

// scenarios are the captured workloads behind testdata/pgoutput and testdata/golden.
var scenarios = []scenario{
	{
		name: "ops",
		setup: `
CREATE TABLE orders (id bigint PRIMARY KEY, customer text NOT NULL, total numeric(12,2), status text);
CREATE TABLE items (order_id bigint, line int, sku text, qty int, PRIMARY KEY (order_id, line));
CREATE TABLE audit (id serial PRIMARY KEY, note text);
SELECT pg_replication_origin_create('upstream');`,
		steps: []string{
			`INSERT INTO orders VALUES (1, 'alice', 10.50, 'new')`,
			`UPDATE orders SET status = 'paid' WHERE id = 1`,
			`INSERT INTO orders VALUES (2, 'bob', 5, 'new'), (3, 'carol', 7.25, 'new'), (4, 'dave', NULL, 'new')`,
			`BEGIN;
INSERT INTO orders VALUES (5, 'erin', 99.99, 'new');
INSERT INTO items VALUES (5, 1, 'SKU-1', 2), (5, 2, 'SKU-2', 1);
UPDATE orders SET total = 100 WHERE id = 5;
SELECT pg_logical_emit_message(true, 'app', 'order 5 placed');
COMMIT;`,
			`UPDATE orders SET id = 20 WHERE id = 2`,
			`DELETE FROM orders WHERE id = 3`,
			`SELECT pg_logical_emit_message(false, 'heartbeat', 'tick')`,
			`SELECT pg_logical_emit_message(true, 'bin', '\xdeadbeef00'::bytea)`,
			`TRUNCATE items, audit RESTART IDENTITY`,
			`SELECT pg_replication_origin_session_setup('upstream');
BEGIN;
SELECT pg_replication_origin_xact_setup('0/ABCDEF', '2024-01-02 03:04:05+00');
INSERT INTO audit (note) VALUES ('replicated');
COMMIT;
SELECT pg_replication_origin_session_reset();`,
		},
		golden: true,
	},
	{
		name: "types",
		setup: `
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE DOMAIN posint AS integer CHECK (VALUE > 0);
CREATE TYPE pair AS (a int, b text);
CREATE TABLE types (
	id int PRIMARY KEY,
	b bool, i2 int2, i4 int4, i8 int8, o oid, f4 float4, f8 float8, n numeric, n_scaled numeric(10,3),
	t text, vc varchar(20), bp char(5), nm name, ch "char",
	j json, jb jsonb, u uuid, by bytea,
	d date, tm time, ttz timetz, ts timestamp, tstz timestamptz, iv interval,
	m mood, dom posint, comp pair, tsv tsvector, ip inet, cash money, bits bit(4), vbits varbit,
	a_int int[], a_text text[], a_2d int[], a_num numeric[], a_bool bool[], a_ts timestamptz[],
	a_json jsonb[], a_bytea bytea[], a_empty text[], a_bounds int[], a_mood mood[], a_uuid uuid[]
);`,
		steps: []string{
			`INSERT INTO types VALUES (1,
	true, 32767, -2147483648, 9223372036854775807, 4294967295, 1.5, 0.1, 123.4500, 3.14,
	'hello', 'varchar', 'ab', 'a_name', 'x',
	'{"b": 1, "a": [1, 2.50, "x"], "b": 2}', '{"b": 1, "a": [1, 2.50, "x"]}', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '\x00ff10'::bytea,
	'2024-02-29', '23:59:59.999999', '12:00:00+05:30', '2024-01-02 03:04:05.123456', '2024-01-02 03:04:05.5+00', '1 year 2 mons 3 days 04:05:06.5',
	'happy', 42, ROW(1, 'x y'), 'a fat cat', '192.168.0.1/24', 12.34, B'1010', B'101',
	'{1,2,NULL,-4}', '{"a b","c,d","q\"uote","back\\slash",NULL,"NULL",""}', '{{1,2},{3,4}}', '{1.50,NaN,-0.001}', '{t,f,NULL}',
	'{"2024-01-02 03:04:05+00",infinity}', ARRAY['{"k": [1, {"z": null}]}'::jsonb, '"s"'], ARRAY['\x0001'::bytea, '\x'], '{}', '[0:1]={7,8}',
	'{sad,happy}', '{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}')`,
			`INSERT INTO types (id, f4, f8, n, t, j, by, d, ts, tstz, iv, ttz, a_text) VALUES (2,
	'NaN', '-Infinity', 'NaN', E'emoji 👍🏽 zwj 👩‍👩‍👧 combining é rtl עברית \u2028 tab\t nl\n quote" bs\\ ctl\x01',
	'{"nul": "\u0000",  "ws" :  [ 1 , 2 ] }', '\x'::bytea, 'infinity', '-infinity', '0044-03-15 12:00:00+00 BC', '-1 mons +2 days -00:00:01', '00:00:00-03:30',
	E'{"multi\nline","tab\there"}')`,
			`INSERT INTO types (id, f8, n, d, ts, tstz) VALUES (3, '-0', 'Infinity', '0044-03-15 BC', '10000-01-01 00:00:00', '1850-06-01 00:00:00+00')`,
			`INSERT INTO types (id) VALUES (4)`,
		},
		// The reading session's zone decides the offsets; Amsterdam had a local mean time
		// offset of +00:19:32 in 1850, which ISO 8601 cannot write.
		session: `SET TimeZone = 'Europe/Amsterdam'`,
		golden:  true,
	},
	{
		name: "identity",
		setup: `
CREATE TABLE ri_default (id int PRIMARY KEY, v text, w int);
CREATE TABLE ri_full (id int PRIMARY KEY, v text, w int);
ALTER TABLE ri_full REPLICA IDENTITY FULL;
CREATE TABLE ri_index (id int PRIMARY KEY, code text NOT NULL, v text);
CREATE UNIQUE INDEX ri_index_code ON ri_index (code);
ALTER TABLE ri_index REPLICA IDENTITY USING INDEX ri_index_code;
CREATE TABLE ri_nothing (id int, v text);
ALTER TABLE ri_nothing REPLICA IDENTITY NOTHING;
CREATE TABLE ri_nopk (v text, w int);
CREATE PUBLICATION pub FOR TABLE ri_default, ri_full, ri_index;
CREATE PUBLICATION pub_ins FOR TABLE ri_nothing, ri_nopk WITH (publish = 'insert, truncate');`,
		pubs: "pub,pub_ins",
		steps: []string{
			`INSERT INTO ri_default VALUES (1, 'a', 1); INSERT INTO ri_full VALUES (1, 'a', 1); INSERT INTO ri_index VALUES (1, 'c1', 'a');
INSERT INTO ri_nothing VALUES (1, 'a'); INSERT INTO ri_nopk VALUES ('a', 1)`,
			`UPDATE ri_default SET v = 'b' WHERE id = 1`,
			`UPDATE ri_full SET v = 'b' WHERE id = 1`,
			`UPDATE ri_index SET v = 'b' WHERE id = 1`,
			`UPDATE ri_default SET w = w WHERE id = 1`,
			`UPDATE ri_full SET w = w WHERE id = 1`,
			`UPDATE ri_default SET id = 2 WHERE id = 1`,
			`UPDATE ri_full SET id = 2 WHERE id = 1`,
			`UPDATE ri_index SET code = 'c2' WHERE id = 1`,
			`UPDATE ri_nothing SET v = 'b'`,
			`DELETE FROM ri_default; DELETE FROM ri_full; DELETE FROM ri_index`,
		},
		golden: true,
	},
	{
		name: "toast",
		setup: `
CREATE TABLE toast_default (id int PRIMARY KEY, big text, small int);
ALTER TABLE toast_default ALTER COLUMN big SET STORAGE EXTERNAL;
CREATE TABLE toast_full (id int PRIMARY KEY, big text, small int);
ALTER TABLE toast_full ALTER COLUMN big SET STORAGE EXTERNAL;
ALTER TABLE toast_full REPLICA IDENTITY FULL;
CREATE TABLE toast_key (k text PRIMARY KEY, small int);
ALTER TABLE toast_key ALTER COLUMN k SET STORAGE EXTERNAL;`,
		steps: []string{
			sprintf(`INSERT INTO toast_default VALUES (1, %s, 1); INSERT INTO toast_full VALUES (1, %s, 1)`, big("a"), big("a")),
			`UPDATE toast_default SET small = 2; UPDATE toast_full SET small = 2`,
			sprintf(`UPDATE toast_default SET big = %s; UPDATE toast_full SET big = %s`, big("b"), big("b")),
			`DELETE FROM toast_default; DELETE FROM toast_full`,
			// 2400 bytes: stored out of line, yet small enough for a btree entry.
			`INSERT INTO toast_key VALUES ((SELECT string_agg(md5(i::text), '') FROM generate_series(1, 75) i), 1)`,
			`UPDATE toast_key SET small = 2`,
			`DELETE FROM toast_key`,
		},
		golden: true,
	},
	{
		name: "names",
		setup: `
CREATE SCHEMA "Odd Schema";
CREATE TABLE "Odd Schema"."my ""quoted"" table" ("select" int PRIMARY KEY, "user" text, "Ünïcödé 列" text, "with space" int, "a,b" text);
CREATE TABLE "user" ("order" int PRIMARY KEY, "from" text);`,
		steps: []string{
			`INSERT INTO "Odd Schema"."my ""quoted"" table" VALUES (1, 'u', 'ü', 2, 'x')`,
			`UPDATE "Odd Schema"."my ""quoted"" table" SET "Ünïcödé 列" = '列'`,
			`INSERT INTO "user" VALUES (1, 'somewhere')`,
			`DELETE FROM "Odd Schema"."my ""quoted"" table"; DELETE FROM "user"`,
		},
		golden: true,
	},
	{
		// The benchmark stream: transactions of 100 changes on a typical table.
		name: "mixed",
		setup: `
CREATE TABLE events (id bigint PRIMARY KEY, body text, n int, at timestamptz, payload jsonb);`,
		steps: mixedSteps(),
	},
}

func mixedSteps() []string {
	row := `SELECT i, repeat(md5(i::text), 3) || 'abcd', i %% 1000, '2024-01-01 00:00:00+00'::timestamptz + i * interval '1 second',
		jsonb_build_object('user', 'user-' || i, 'tags', jsonb_build_array('alpha', 'beta', 'gamma'), 'score', i * 1.5,
			'active', i %% 2 = 0, 'note', md5(i::text) || md5((i + 1)::text), 'nested', jsonb_build_object('a', i, 'b', 'text value'))
		FROM generate_series(%d, %d) i`
	var steps []string
	for tx := 0; tx < 4; tx++ {
		steps = append(steps, sprintf(`INSERT INTO events `+row, tx*100+1, tx*100+100))
	}
	for tx := 0; tx < 6; tx++ {
		base := 1000 + tx*20
		steps = append(steps, sprintf(`BEGIN;
INSERT INTO events `+row+`;
UPDATE events SET n = n + 1, body = body || 'x' WHERE id BETWEEN %d AND %d;
DELETE FROM events WHERE id BETWEEN %d AND %d;
COMMIT;`, base+1, base+20, tx*60+1, tx*60+60, 381-tx*20, 400-tx*20))
	}
	return steps
}
