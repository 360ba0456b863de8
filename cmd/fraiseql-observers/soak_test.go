package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/fraiseql/fraiseql-observers/internal/pgtest"
)

// TestConcurrentWritersThroughKills is the CI size of reliability test R1: for five
// seconds four writer sessions commit transactions of 1–10 counter updates
// (v = v + 1) over 500 keys while the service, delivering with 8 workers per action, is killed with
// SIGKILL three times and restarted at once. For every key the distinct events, in
// the order the file received them, carry v = 1, 2, 3, ... up to the key's final
// value in the database: nothing lost, per-key order kept, and a redelivered event
// always has its original id.
func TestConcurrentWritersThroughKills(t *testing.T) {
	if testing.Short() {
		t.Skip("long test")
	}
	const keys, writers = 500, 4
	const writeFor = 5 * time.Second
	db := pgtest.NewDB(t)
	db.Exec(fmt.Sprintf(`CREATE TABLE t (k int PRIMARY KEY, v int NOT NULL);
	         INSERT INTO t SELECT g, 0 FROM generate_series(1, %d) g;
	         CREATE PUBLICATION obs_pub FOR TABLE t`, keys))
	out := filepath.Join(t.TempDir(), "events.jsonl")
	cfg := writeConfig(t, opsConfig(db, "", "", "concurrent_execution: {max_concurrency: 8}", fmt.Sprintf(`  counters:
    entity: t
    event_type: UPDATE
    actions: [{type: file, path: %q}]
`, out)))
	p := startService(t, nil, "start", "--config", cfg)
	waitFor(t, 30*time.Second, "the service to stream", func() bool { return slotActive(db, "obs_slot") })

	ctx := context.Background()
	errs := make(chan error, writers)
	var wg sync.WaitGroup
	for w := range writers {
		conn, err := pgx.Connect(ctx, db.DSN())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close(ctx) })
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(w), 42))
			for deadline := time.Now().Add(writeFor); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
				ks := make([]int, 1+r.IntN(10))
				for i := range ks {
					ks[i] = 1 + r.IntN(keys)
				}
				slices.Sort(ks) // one lock order: no deadlocks between writers
				err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
					for _, k := range ks {
						if _, err := tx.Exec(ctx, `UPDATE t SET v = v + 1 WHERE k = $1`, k); err != nil {
							return err
						}
					}
					return nil
				})
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	writing := make(chan struct{})
	go func() { wg.Wait(); close(writing) }()

	r := rand.New(rand.NewPCG(9, 9))
	for kill := range 3 {
		select {
		case <-writing:
			t.Fatalf("the writers finished before kill %d: the kills must land while they write", kill+1)
		case <-time.After(time.Duration(300+r.IntN(700)) * time.Millisecond):
		}
		p.kill()
		p = startService(t, nil, "start", "--config", cfg)
	}
	<-writing
	close(errs)
	for err := range errs {
		t.Fatalf("writer: %v", err)
	}

	final := map[int]int{}
	total := 0
	rows, err := db.Conn().Query(ctx, `SELECT k, v FROM t`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var k, v int
		if err := rows.Scan(&k, &v); err != nil {
			t.Fatal(err)
		}
		final[k] = v
		total += v
	}
	if total == 0 {
		t.Fatal("the writers changed nothing")
	}
	waitFor(t, 3*time.Minute, fmt.Sprintf("%d distinct updates", total), func() bool {
		seen := map[string]bool{}
		for _, ev := range readEvents(t, out) {
			seen[ev.ID] = true
		}
		return len(seen) >= total
	})
	if code := p.stop(); code != 0 {
		t.Fatalf("unexpected exit code after SIGTERM; got %d", code)
	}

	next := map[int]int{}        // key → the v of its last new event
	first := map[string]string{} // event id → the row it carried first
	for _, ev := range readEvents(t, out) {
		var k, v int
		if json.Unmarshal(ev.New["k"], &k) != nil || json.Unmarshal(ev.New["v"], &v) != nil {
			t.Fatalf("unexpected event %s", ev.raw)
		}
		row := fmt.Sprintf("k=%d v=%d", k, v)
		if prev, dup := first[ev.ID]; dup {
			if prev != row {
				t.Fatalf("event %s redelivered with %s; first delivered with %s", ev.ID, row, prev)
			}
			continue
		}
		first[ev.ID] = row
		if want := next[k] + 1; v != want {
			t.Fatalf("key %d: event %s carries v = %d; want %d (lost or out of order)", k, ev.ID, v, want)
		}
		next[k] = v
	}
	for k, v := range final {
		if next[k] != v {
			t.Fatalf("key %d: last delivered v = %d; the database has %d", k, next[k], v)
		}
	}
	t.Logf("%d updates over %d keys, %d lines in the file", total, keys, len(readEvents(t, out)))
}
