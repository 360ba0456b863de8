package main

import (
	"context"
	"fmt"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/fraiseql/fraiseql-observers/internal/pgtest"
	"github.com/fraiseql/fraiseql-observers/lsn"
)

// insertEach commits n single-row transactions into t.
func insertEach(t *testing.T, db *pgtest.DB, first, n int) {
	t.Helper()
	conn := db.Conn()
	for id := first; id < first+n; id++ {
		if _, err := conn.Exec(context.Background(), `INSERT INTO t (id, v) VALUES ($1, $1)`, id); err != nil {
			t.Fatal(err)
		}
	}
}

// TestReplayFromLSN delivers 1000 events, replays from the commit LSN of the 500th
// with the replay window on, and checks that exactly the events committed from there
// are delivered again, in order, with their original ids; then that a position older
// than the slot keeps is refused with the oldest replayable LSN.
func TestReplayFromLSN(t *testing.T) {
	db := pgtest.NewDB(t)
	db.Exec(`CREATE TABLE t (id int PRIMARY KEY, v int); CREATE PUBLICATION obs_pub FOR TABLE t`)
	addr := freeAddr(t)
	out := filepath.Join(t.TempDir(), "events.jsonl")
	cfg := writeConfig(t, opsConfig(db, addr, "", "replay_window: 1GiB", fmt.Sprintf(`
  all:
    table: public.t
    event_type: INSERT
    actions: [{type: file, name: out, path: %q}]
`, out)))
	p := startAndWait(t, cfg, addr)
	const n = 1000
	insertEach(t, db, 1, n)
	waitFor(t, 2*time.Minute, "1000 events", func() bool { return len(readEvents(t, out)) >= n })
	first := readEvents(t, out)
	// Rows are delivered concurrently: order the file by commit to find the 500th event.
	sort.Slice(first, func(i, j int) bool {
		return mustPosition(t, first[i].ID).Compare(mustPosition(t, first[j].ID)) < 0
	})
	mid := first[n/2-1] // the 500th event
	from, err := lsn.Parse(mid.CommitLSN)
	if err != nil {
		t.Fatal(err)
	}
	var want []fileEvent
	for _, ev := range first {
		if c, _ := lsn.Parse(ev.CommitLSN); c >= from {
			want = append(want, ev)
		}
	}
	if len(want) != n/2+1 {
		t.Fatalf("unexpected number of events committed from %s; got %d; want %d", from, len(want), n/2+1)
	}

	r := expectCLI(t, nil, 0, []string{"Replaying transactions committed from " + from.String(), "all.out"},
		"replay", "--from-lsn", from.String(), "--config", cfg)
	_ = r
	waitFor(t, 2*time.Minute, "the replayed events", func() bool { return len(readEvents(t, out)) >= n+len(want) })
	// Nothing more arrives: the replay ends at the position routed when it was asked.
	last := mustLSN(t, first[n-1].CommitLSN)
	waitFor(t, 30*time.Second, "the checkpoint to pass the replayed range", func() bool {
		return mustLSN(t, pgtest.QueryValue[string](db, `SELECT commit_lsn::text FROM observer_checkpoints WHERE action = 'all.out'`)) >= last
	})
	settle := scrape(t, addr, "")[`observer_actions_executed_total{action_type="file"}`]
	got := readEvents(t, out)
	if len(got) != n+len(want) || settle != float64(n+len(want)) {
		t.Fatalf("unexpected number of deliveries; got %d (counter %v); want %d", len(got), settle, n+len(want))
	}
	// Rows are delivered concurrently, so the file's order is free: compare as a set.
	wantRaw := map[string]string{}
	for _, ev := range want {
		wantRaw[ev.ID] = ev.raw
	}
	for _, ev := range got[n:] {
		w, ok := wantRaw[ev.ID]
		if !ok {
			t.Fatalf("replayed an event from before %s or twice: %s", from, ev.raw)
		}
		if ev.raw != w {
			t.Fatalf("replayed event %s differs;\ngot  %s\nwant %s", ev.ID, ev.raw, w)
		}
		delete(wantRaw, ev.ID)
	}

	// A position older than the slot keeps: refused, naming the oldest replayable LSN.
	oldest := db.SlotConfirmedFlush("obs_slot")
	r = expectCLI(t, nil, exitConfig, nil, "replay", "--from-lsn", "0/1", "--config", cfg)
	if !strings.Contains(r.stderr, "cannot replay from 0/1: slot obs_slot can only replay from "+oldest) {
		t.Fatalf("unexpected error for a replay from 0/1 (slot confirmed_flush_lsn %s): %s", oldest, r.stderr)
	}
	if code := p.stop(); code != 0 {
		t.Fatalf("unexpected exit code %d", code)
	}
}

// TestReplayWithoutWindow checks that without a replay window a replay of delivered
// history is refused with the oldest replayable LSN, never moved forward silently; and
// that start --start-lsn refuses it too.
func TestReplayWithoutWindow(t *testing.T) {
	db := pgtest.NewDB(t)
	db.Exec(`CREATE TABLE t (id int PRIMARY KEY, v int); CREATE PUBLICATION obs_pub FOR TABLE t`)
	addr := freeAddr(t)
	out := filepath.Join(t.TempDir(), "events.jsonl")
	cfg := writeConfig(t, opsConfig(db, addr, "", "", fmt.Sprintf(`
  all:
    table: public.t
    event_type: INSERT
    actions: [{type: file, name: out, path: %q}]
`, out)))
	p := startAndWait(t, cfg, addr)
	insertEach(t, db, 1, 10)
	waitFor(t, time.Minute, "10 events", func() bool { return len(readEvents(t, out)) >= 10 })
	evs := readEvents(t, out)
	from := evs[0].CommitLSN
	waitFor(t, time.Minute, "the slot to confirm the delivered events", func() bool {
		c, _ := lsn.Parse(db.SlotConfirmedFlush("obs_slot"))
		last, _ := lsn.Parse(evs[9].CommitLSN)
		return c > last
	})
	r := expectCLI(t, nil, exitConfig, nil, "replay", "--from-lsn", from, "--config", cfg)
	m := regexp.MustCompile(`cannot replay from (\S+): slot obs_slot can only replay from (\S+) \(its confirmed_flush_lsn\)`).FindStringSubmatch(r.stderr)
	if m == nil || m[1] != from {
		t.Fatalf("unexpected error of a replay without window: %s", r.stderr)
	}
	named, _ := lsn.Parse(m[2])
	if now, _ := lsn.Parse(db.SlotConfirmedFlush("obs_slot")); named < mustLSN(t, from) || named > now {
		t.Fatalf("the error names %s as the oldest replayable LSN; the slot's confirmed_flush_lsn is %s", named, now)
	}
	if len(readEvents(t, out)) != 10 {
		t.Fatalf("a refused replay delivered events")
	}
	if code := p.stop(); code != 0 {
		t.Fatalf("unexpected exit code %d", code)
	}
	expectExit(t, exitConfig, `cannot replay from `+regexp.QuoteMeta(from)+`: slot obs_slot can only replay from`, "start", "--config", cfg, "--start-lsn", from)
}

func mustLSN(t *testing.T, s string) lsn.LSN {
	t.Helper()
	l, err := lsn.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func mustPosition(t *testing.T, s string) lsn.Position {
	t.Helper()
	p, err := lsn.ParsePosition(s)
	if err != nil {
		t.Fatal(err)
	}
	return p
}
