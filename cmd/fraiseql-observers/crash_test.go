package main

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fraiseql/fraiseql-observers/internal/pgtest"
	"github.com/fraiseql/fraiseql-observers/lsn"
)

// committedTx is one transaction of the workload: the ids it inserted and a WAL position
// read right after its commit (at or after the end of its commit record).
type committedTx struct {
	first, last int
	after       lsn.LSN
}

// insertBacklog commits n rows in transactions of per rows and records each one.
func insertBacklog(t *testing.T, db *pgtest.DB, firstID, n, per int) []committedTx {
	t.Helper()
	ctx := context.Background()
	conn := db.Conn()
	var txs []committedTx
	for id := firstID; id < firstID+n; id += per {
		last := min(id+per-1, firstID+n-1)
		if _, err := conn.Exec(ctx, `INSERT INTO t SELECT g, 0, repeat('x', 60) FROM generate_series($1::bigint, $2::bigint) g`, id, last); err != nil {
			t.Fatal(err)
		}
		var after string
		if err := conn.QueryRow(ctx, `SELECT pg_current_wal_lsn()::text`).Scan(&after); err != nil {
			t.Fatal(err)
		}
		l, _ := lsn.Parse(after)
		txs = append(txs, committedTx{first: id, last: last, after: l})
	}
	return txs
}

// idsInFile returns every inserted id found in the file and checks that all copies of
// one row carry the same event id.
func idsInFile(t *testing.T, path string, sizeLimit int64) map[int]string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	if sizeLimit >= 0 && int64(len(data)) > sizeLimit {
		data = data[:sizeLimit]
	}
	tmp := filepath.Join(t.TempDir(), "prefix.jsonl")
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	seen := map[int]string{}
	for _, ev := range readEventsLenient(t, tmp) {
		if ev.Op != "INSERT" {
			continue
		}
		id, err := strconv.Atoi(string(ev.New["id"]))
		if err != nil {
			t.Fatalf("insert event without a numeric id: %s", ev.raw)
		}
		if prev, ok := seen[id]; ok && prev != ev.ID {
			t.Fatalf("row %d delivered twice with different event ids %s and %s", id, prev, ev.ID)
		}
		seen[id] = ev.ID
	}
	return seen
}

// readEventsLenient is readEvents that ignores an incomplete last line (a prefix of the
// file cut at an arbitrary byte).
func readEventsLenient(t *testing.T, path string) []fileEvent {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if i := lastNewline(data); i+1 < len(data) {
		data = data[:i+1]
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return readEvents(t, path)
}

func lastNewline(b []byte) int {
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] == '\n' {
			return i
		}
	}
	return -1
}

// confirmedFlush reads the slot's confirmed_flush_lsn.
func confirmedFlush(t *testing.T, db *pgtest.DB, slot string) lsn.LSN {
	t.Helper()
	s := db.SlotConfirmedFlush(slot)
	if s == "" {
		return 0
	}
	l, err := lsn.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// checkConfirmedCovered fails if the slot confirmed a transaction whose rows are not
// all in the given set of delivered ids.
func checkConfirmedCovered(t *testing.T, txs []committedTx, confirmed lsn.LSN, seen map[int]string, when string) {
	t.Helper()
	for _, tx := range txs {
		if tx.after > confirmed {
			continue
		}
		for id := tx.first; id <= tx.last; id++ {
			if _, ok := seen[id]; !ok {
				t.Fatalf("%s: confirmed_flush_lsn %s covers the transaction ending before %s, but row %d is not in the file",
					when, confirmed, tx.after, id)
			}
		}
	}
}

type sample struct {
	confirmed lsn.LSN
	fileSize  int64
}

// TestCrashSafetyUnderKill kills the service with SIGKILL several times while it works
// through a 100k-row backlog: every committed row ends up in the file, duplicates carry
// the same id, and the slot never confirmed what the file did not hold.
func TestCrashSafetyUnderKill(t *testing.T) {
	if testing.Short() {
		t.Skip("long test")
	}
	db := pgtest.NewDB(t)
	db.Exec(`CREATE TABLE t (id bigint PRIMARY KEY, v int NOT NULL, payload text);
	         CREATE PUBLICATION obs_pub FOR TABLE t`)
	db.CreateSlot("obs_slot")
	const rows = 100_000
	txs := insertBacklog(t, db, 1, rows, 100)

	out := filepath.Join(t.TempDir(), "events.jsonl")
	// The service streams through a proxy that passes it at most 2 MB/s of replication
	// data (the backlog is about 12 MB), so that each kill lands mid-stream however
	// fast the service is and however busy the machine (an unthrottled service has
	// read the whole backlog between two of the test's polls).
	proxy := pgtest.StartProxy(t, fmt.Sprintf("127.0.0.1:%d", db.Server.Port))
	proxy.Throttle(2 << 20)
	cfg := writeConfig(t, strings.Replace(baseConfig(db, out, "pipeline: {max_in_flight_bytes: 2MiB}"),
		fmt.Sprintf("127.0.0.1:%d", db.Server.Port), proxy.Addr(), 1))

	// The sampler reads the slot, then the file's size: the size is at least what was
	// flushed when the slot position was read.
	var mu sync.Mutex
	var samples []sample
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			c := confirmedFlushQuiet(db, "obs_slot")
			var size int64
			if st, err := os.Stat(out); err == nil {
				size = st.Size()
			}
			mu.Lock()
			samples = append(samples, sample{c, size})
			mu.Unlock()
		}
	}()

	// Kill at growing fractions of the backlog, measured by the file's size (a line
	// is about the size of the first one), so every kill lands mid-stream.
	r := rand.New(rand.NewPCG(3, 4))
	for kill, frac := range []float64{0.1, 0.3, 0.55, 0.8} {
		p := startService(t, nil, "start", "--config", cfg)
		target := int64(frac*rows) * lineSize(t, p, out)
		target += int64(r.IntN(1000)) * 100
		waitFor(t, 2*time.Minute, "the file to grow", func() bool {
			st, err := os.Stat(out)
			return p.exited() || (err == nil && st.Size() >= target)
		})
		if p.exited() {
			t.Fatalf("service exited early:\n%s", p.output())
		}
		p.kill()
		seen := idsInFile(t, out, -1)
		checkConfirmedCovered(t, txs, confirmedFlush(t, db, "obs_slot"), seen, "after SIGKILL "+strconv.Itoa(kill+1))
		t.Logf("kill %d: %d of %d rows delivered", kill+1, len(seen), rows)
		if len(seen) == rows {
			t.Fatalf("kill %d came after the whole backlog was delivered: the test did not kill mid-stream", kill+1)
		}
	}
	p := startService(t, nil, "start", "--config", cfg)
	waitFor(t, 3*time.Minute, "every row in the file", func() bool { return len(idsInFile(t, out, -1)) == rows })
	p.stop()
	close(stop)
	wg.Wait()

	seen := idsInFile(t, out, -1)
	if len(seen) != rows {
		t.Fatalf("unexpected number of distinct rows delivered; got %d; want %d", len(seen), rows)
	}
	mu.Lock()
	defer mu.Unlock()
	for i, s := range samples {
		if i%10 != 0 && i != len(samples)-1 {
			continue // every tenth sample keeps the check fast; violations persist across samples
		}
		checkConfirmedCovered(t, txs, s.confirmed, idsInFile(t, out, s.fileSize), "sample "+strconv.Itoa(i))
	}
	total := len(readEvents(t, out))
	t.Logf("%d rows, %d events in the file (%d duplicates after %d kills), %d slot samples", rows, total, total-rows, 4, len(samples))
}

func confirmedFlushQuiet(db *pgtest.DB, slot string) lsn.LSN {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := db.Server.Connect(ctx, db.Name)
	if err != nil {
		return 0
	}
	defer conn.Close(ctx)
	var s *string
	if err := conn.QueryRow(ctx, `SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1`, slot).Scan(&s); err != nil || s == nil {
		return 0
	}
	l, _ := lsn.Parse(*s)
	return l
}

// TestPostgresCrashAndRestart kills PostgreSQL in immediate mode while the service
// streams and writers commit; the service reconnects by itself and loses nothing.
func TestPostgresCrashAndRestart(t *testing.T) {
	db := pgtest.NewDB(t)
	db.Exec(`CREATE TABLE t (id bigint PRIMARY KEY, v int NOT NULL, payload text);
	         CREATE PUBLICATION obs_pub FOR TABLE t`)
	out := filepath.Join(t.TempDir(), "events.jsonl")
	cfg := writeConfig(t, baseConfig(db, out, ""))
	p := startService(t, nil, "start", "--config", cfg)
	waitFor(t, 30*time.Second, "the service to stream", func() bool { return slotActive(db, "obs_slot") })

	ctx := context.Background()
	write := func(from, to int) {
		for id := from; id < to; id++ {
			for {
				err := db.Server.Exec(ctx, db.Name, `INSERT INTO t VALUES ($1, 0, 'p') ON CONFLICT DO NOTHING`, id)
				if err == nil {
					break
				}
				time.Sleep(100 * time.Millisecond) // the server is down: try again
			}
		}
	}
	done := make(chan struct{})
	go func() { defer close(done); write(1, 600) }()
	time.Sleep(500 * time.Millisecond)
	if err := db.Server.Kill(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	if err := db.Server.Start(); err != nil {
		t.Fatal(err)
	}
	<-done
	n := pgtest.QueryValue[int64](db, "SELECT count(*) FROM t")
	waitFor(t, 90*time.Second, "every committed row in the file", func() bool { return int64(len(idsInFile(t, out, -1))) == n })
	if p.exited() {
		t.Fatalf("service exited instead of reconnecting")
	}
	p.stop()
}

// lineSize waits for the first line of the file and returns its length.
func lineSize(t *testing.T, p *proc, path string) int64 {
	t.Helper()
	var n int64
	waitFor(t, time.Minute, "the first event in the file", func() bool {
		data, err := os.ReadFile(path)
		if err != nil {
			return p.exited()
		}
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			n = int64(i + 1)
			return true
		}
		return p.exited()
	})
	return n
}
