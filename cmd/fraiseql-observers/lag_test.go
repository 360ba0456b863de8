package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/fraiseql/fraiseql-observers/internal/pgtest"
)

// TestLagWhileBacklogged makes a real backlog — the file action writes into a FIFO
// that nobody reads, so its writes block once the pipe buffer is full — and checks
// that lag in bytes and seconds is above zero while events wait, and back to zero
// once the reader drains the FIFO and every event is delivered.
func TestLagWhileBacklogged(t *testing.T) {
	db := pgtest.NewDB(t)
	db.Exec(`CREATE TABLE t (id int PRIMARY KEY, v int, pad text); CREATE PUBLICATION obs_pub FOR TABLE t`)
	addr := freeAddr(t)
	fifo := filepath.Join(t.TempDir(), "events.fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := writeConfig(t, opsConfig(db, addr, "", "", fmt.Sprintf(`
  all:
    table: public.t
    event_type: INSERT
    actions: [{type: file, name: out, path: %q, fsync: never}]
`, fifo)))
	p := startAndWait(t, cfg, addr)
	const n = 2000 // about 400 kB of events: far more than a pipe holds
	db.Exec(fmt.Sprintf(`INSERT INTO t SELECT g, g, repeat('x', 100) FROM generate_series(1, %d) g`, n))

	const lagBytes, lagSeconds = "observer_replication_lag_bytes", "observer_replication_lag_seconds"
	waitFor(t, time.Minute, "lag above zero while the sink is blocked", func() bool {
		m := scrape(t, addr, "")
		return m[lagBytes] > 0 && m[lagSeconds] > 0
	})
	var st statusDoc
	cliJSON(t, nil, &st, "status", "--config", cfg)
	if st.Stream == nil || st.Stream.LagBytes == 0 || st.Stream.LagSeconds <= 0 {
		t.Fatalf("status shows no lag while the sink is blocked: %+v", st.Stream)
	}

	// Drain the FIFO: every event arrives, and lag goes back to zero.
	r, err := os.OpenFile(fifo, os.O_RDONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var lines atomic.Int64
	go func() {
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			if bytes.Contains(sc.Bytes(), []byte(`"op":"INSERT"`)) {
				lines.Add(1)
			}
		}
	}()
	waitFor(t, 2*time.Minute, "every event read from the FIFO", func() bool { return lines.Load() == n })
	waitFor(t, time.Minute, "lag back to zero", func() bool {
		m := scrape(t, addr, "")
		return m[lagBytes] == 0 && m[lagSeconds] == 0
	})
	// status reads the server's WAL position afresh: our own checkpoint writes move it
	// for a moment until the next keepalive confirms them, so poll.
	waitFor(t, time.Minute, "status to show no lag", func() bool {
		r := cli(t, nil, "status", "--config", cfg)
		return r.code == 0 && strings.Contains(r.stdout, "Leader: listener-1 (1/1 healthy)") && strings.Contains(r.stdout, "Lag: 0 B, 0.0s")
	})
	p.stop() // the exit code reflects the fsync of a FIFO at close, which fails
}
