package main

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fraiseql/fraiseql-observers/internal/pgtest"
)

const partitionedOrders = `
CREATE TABLE orders (id int, region text, status text NOT NULL, PRIMARY KEY (id, region)) PARTITION BY LIST (region);
CREATE TABLE orders_eu PARTITION OF orders FOR VALUES IN ('eu');
CREATE TABLE orders_us PARTITION OF orders FOR VALUES IN ('us');`

// partitionConfig watches entity with a file action writing to out.
func partitionConfig(db *pgtest.DB, source, entity, out string) string {
	return fmt.Sprintf(`
source: {dsn: %q, slot: obs_slot, publication: obs_pub, manage_slot: true, status_interval: 1s%s}
admin: {listen: ""}
observers:
  orders:
    entity: %s
    event_type: [INSERT, UPDATE, DELETE]
    actions: [{type: file, path: %q, ordered: true}]
`, db.DSN(), source, entity, out)
}

// TestObservedTables is part of reliability test R16: an observer of a partitioned
// table sees the changes of every partition under the table's name when the service
// creates the publication (publish_via_partition_root). An observed table whose
// changes cannot arrive under its name — published by partition, a partition
// published via its root, missing, not published — is reported by start and by
// validate-config --detailed instead of silently never firing; a table added to the
// publication mid-stream is picked up without a restart.
func TestObservedTables(t *testing.T) {
	t.Run("managed publication", func(t *testing.T) {
		db := pgtest.NewDB(t)
		db.Exec(partitionedOrders)
		out := filepath.Join(t.TempDir(), "events.jsonl")
		cfg := writeConfig(t, partitionConfig(db, ", manage_publication: true, publication_tables: [public.orders]", "public.orders", out))
		expectCLI(t, nil, 0, []string{"OK    publication obs_pub does not exist yet; start creates it"}, "validate-config", cfg, "--detailed")
		p := startService(t, nil, "start", "--config", cfg)
		waitFor(t, 30*time.Second, "the service to stream", func() bool { return slotActive(db, "obs_slot") })
		if !pgtest.QueryValue[bool](db, `SELECT pubviaroot FROM pg_publication WHERE pubname = 'obs_pub'`) {
			t.Fatal("the managed publication does not publish via the partition root")
		}
		db.Exec(`INSERT INTO orders VALUES (1, 'eu', 'new'), (2, 'us', 'new')`)
		db.Exec(`UPDATE orders SET status = 'shipped' WHERE id = 1`)
		db.Exec(`UPDATE orders SET region = 'us' WHERE id = 1`) // moves the row to another partition
		db.Exec(`DELETE FROM orders WHERE id = 2`)
		want := []string{"INSERT orders 1 eu", "INSERT orders 2 us", "UPDATE orders 1 eu", "DELETE orders 1 eu", "INSERT orders 1 us", "DELETE orders 2 us"}
		waitFor(t, 30*time.Second, "the events", func() bool { return len(readEvents(t, out)) >= len(want) })
		if code := p.stop(); code != 0 {
			t.Fatalf("unexpected exit code %d", code)
		}
		var got []string
		for _, ev := range readEvents(t, out) {
			row := ev.New
			if ev.Op == "DELETE" {
				row = ev.Key
			}
			got = append(got, fmt.Sprintf("%s %s %s %s", ev.Op, ev.Table, row["id"], strings.Trim(string(row["region"]), `"`)))
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("unexpected events;\ngot  %q\nwant %q", got, want)
		}
		if strings.Contains(p.output(), "observed_table") {
			t.Fatalf("unexpected warning about the observed table:\n%s", p.output())
		}
	})

	t.Run("published by partition", func(t *testing.T) {
		db := pgtest.NewDB(t)
		db.Exec(partitionedOrders + `CREATE PUBLICATION obs_pub FOR TABLE orders`)
		out := filepath.Join(t.TempDir(), "events.jsonl")
		cfg := writeConfig(t, partitionConfig(db, "", "public.orders", out))
		const problem = `public.orders is partitioned, and publication obs_pub sends its changes under each partition's name: observers of public.orders never fire; ALTER PUBLICATION "obs_pub" SET (publish_via_partition_root = true)`
		expectCLI(t, nil, exitPrefight, []string{"FAIL  observer orders: " + problem}, "validate-config", cfg, "--detailed")
		p := startService(t, nil, "start", "--config", cfg)
		logged := strings.ReplaceAll(problem, `"`, `\"`) // in a JSON log line
		waitFor(t, 30*time.Second, "the warning", func() bool { return strings.Contains(p.output(), logged) })

		// Fixed as the message says, the next start is quiet and the observer fires.
		if code := p.stop(); code != 0 {
			t.Fatalf("unexpected exit code %d", code)
		}
		db.Exec(`ALTER PUBLICATION "obs_pub" SET (publish_via_partition_root = true)`)
		expectCLI(t, nil, 0, []string{"OK    public.orders is published"}, "validate-config", cfg, "--detailed")
		p = startService(t, nil, "start", "--config", cfg)
		waitFor(t, 30*time.Second, "the service to stream", func() bool { return slotActive(db, "obs_slot") })
		db.Exec(`INSERT INTO orders VALUES (3, 'eu', 'new')`)
		waitFor(t, 30*time.Second, "the event", func() bool { return len(readEvents(t, out)) == 1 })
		if ev := readEvents(t, out)[0]; ev.Table != "orders" {
			t.Fatalf("unexpected table %q; want orders", ev.Table)
		}
		if strings.Contains(p.output(), "observed_table") {
			t.Fatalf("unexpected warning about the observed table:\n%s", p.output())
		}
	})

	t.Run("observer of a partition", func(t *testing.T) {
		db := pgtest.NewDB(t)
		db.Exec(partitionedOrders + `CREATE PUBLICATION obs_pub FOR TABLE orders WITH (publish_via_partition_root = true)`)
		cfg := writeConfig(t, partitionConfig(db, "", "public.orders_eu", filepath.Join(t.TempDir(), "events.jsonl")))
		expectCLI(t, nil, exitPrefight, []string{"FAIL  observer orders: public.orders_eu is a partition of public.orders, and publication obs_pub sends its changes under public.orders's name: observers of public.orders_eu never fire; watch public.orders instead"},
			"validate-config", cfg, "--detailed")
	})

	t.Run("observer of a missing table", func(t *testing.T) {
		db := pgtest.NewDB(t)
		db.Exec(`CREATE TABLE t (id int PRIMARY KEY); CREATE PUBLICATION obs_pub FOR TABLE t`)
		cfg := writeConfig(t, partitionConfig(db, "", "public.gone", filepath.Join(t.TempDir(), "events.jsonl")))
		p := startService(t, nil, "start", "--config", cfg)
		waitFor(t, 30*time.Second, "the warning", func() bool {
			return strings.Contains(p.output(), "table public.gone does not exist: observers of it never fire until it is created and published")
		})
	})

	t.Run("table added to the publication mid-stream", func(t *testing.T) {
		db := pgtest.NewDB(t)
		db.Exec(`CREATE TABLE t (id int PRIMARY KEY); CREATE TABLE late (id int PRIMARY KEY); CREATE PUBLICATION obs_pub FOR TABLE t`)
		out := filepath.Join(t.TempDir(), "events.jsonl")
		cfg := writeConfig(t, partitionConfig(db, "", "public.late", out))
		p := startService(t, nil, "start", "--config", cfg)
		waitFor(t, 30*time.Second, "the warning", func() bool {
			return strings.Contains(p.output(), `public.late is not in publication obs_pub: observers of it never fire; ALTER PUBLICATION \"obs_pub\" ADD TABLE \"public\".\"late\"`)
		})
		waitFor(t, 30*time.Second, "the service to stream", func() bool { return slotActive(db, "obs_slot") })
		db.Exec(`INSERT INTO late VALUES (1)`) // not published yet: never arrives
		db.Exec(`ALTER PUBLICATION obs_pub ADD TABLE late`)
		db.Exec(`INSERT INTO late VALUES (2)`)
		waitFor(t, 30*time.Second, "the event", func() bool { return len(readEvents(t, out)) > 0 })
		if code := p.stop(); code != 0 {
			t.Fatalf("unexpected exit code %d", code)
		}
		evs := readEvents(t, out)
		if len(evs) != 1 || evs[0].Table != "late" || string(evs[0].New["id"]) != "2" {
			t.Fatalf("unexpected events %+v; want the insert of row 2 only", evs)
		}
	})

	t.Run("condition reads an unknown column", func(t *testing.T) {
		db := pgtest.NewDB(t)
		db.Exec(`CREATE TABLE orders (id int PRIMARY KEY, status text, total numeric); CREATE PUBLICATION obs_pub FOR TABLE orders`)
		cfg := writeConfig(t, fmt.Sprintf(`source: {dsn: %q, slot: obs_slot, publication: obs_pub, manage_slot: true}
admin: {listen: ""}
observers:
  shipped:
    entity: orders
    condition: "stauts == 'shipped' && new.total > 100 && field_changed('totl')"
    actions: [{type: stdout}]
`, db.DSN()))
		at := func(col int) string { return fmt.Sprintf("%s:6:%d: ", cfg, col) }
		problem1 := `observer shipped's condition reads column "stauts", which public.orders does not have, so it never matches (did you mean "status"?)`
		problem2 := `observer shipped's condition reads column "totl", which public.orders does not have, so it never matches (did you mean "total"?)`
		expectCLI(t, nil, exitPrefight, []string{"FAIL  " + at(17) + problem1 + "; " + at(73) + problem2}, "validate-config", cfg, "--detailed")
		p := startService(t, nil, "start", "--config", cfg)
		waitFor(t, 30*time.Second, "the warnings", func() bool {
			out := strings.ReplaceAll(p.output(), `\"`, `"`)
			return strings.Contains(out, problem1) && strings.Contains(out, problem2)
		})
	})
}
