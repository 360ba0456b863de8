package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/fraiseql/fraiseql-observers/dlq"
	"github.com/fraiseql/fraiseql-observers/internal/pgtest"
	"github.com/fraiseql/fraiseql-observers/internal/promtext"
	"github.com/fraiseql/fraiseql-observers/pipeline"
)

const (
	okEvents  = 25 // rows inserted into t_ok, delivered to a file
	badEvents = 3  // rows inserted into t_bad, whose action always fails
	attempts  = 2  // retry.max_attempts of the failing action
)

// operatorSetup runs the service with a working and a failing action (a file whose
// path is a symlink to /dev/full: every write fails with ENOSPC until the link is
// pointed at a real file) and an admin token.
type operatorSetup struct {
	db                      *pgtest.DB
	cfg, addr, dir, badLink string
	env                     []string
	p                       *proc
}

func newOperatorSetup(t *testing.T) *operatorSetup {
	s := &operatorSetup{db: pgtest.NewDB(t), addr: freeAddr(t), dir: t.TempDir()}
	s.db.Exec(`CREATE TABLE t_ok (id int PRIMARY KEY, v int); CREATE TABLE t_bad (id int PRIMARY KEY, v int);
	           CREATE PUBLICATION obs_pub FOR TABLE t_ok, t_bad`)
	s.badLink = filepath.Join(s.dir, "bad.jsonl")
	if err := os.Symlink("/dev/full", s.badLink); err != nil {
		t.Fatal(err)
	}
	s.env = []string{"OBS_ADMIN_TOKEN=t0ken-for-tests"}
	s.cfg = writeConfig(t, opsConfig(s.db, s.addr, "OBS_ADMIN_TOKEN", "", fmt.Sprintf(`
  ok:
    table: public.t_ok
    event_type: [INSERT, UPDATE, DELETE]
    actions: [{type: file, name: out, path: %q}]
  bad:
    table: public.t_bad
    event_type: INSERT
    retry: {max_attempts: %d, backoff_strategy: fixed, initial_delay: 10ms}
    on_failure: dlq
    actions: [{type: file, name: out, path: %q, fsync: never}]
`, filepath.Join(s.dir, "ok.jsonl"), attempts, s.badLink)))
	return s
}

func (s *operatorSetup) run(t *testing.T, code int, want []string, args ...string) cliResult {
	t.Helper()
	return expectCLI(t, s.env, code, want, append(args, "--config", s.cfg)...)
}

func (s *operatorSetup) json(t *testing.T, out any, args ...string) {
	t.Helper()
	cliJSON(t, s.env, out, append(args, "--config", s.cfg)...)
}

// TestOperatorSurface scrapes /metrics during a run and checks every seed metric
// against what happened, then runs each CLI command as a subprocess against the
// running service and against the stopped one, in text and JSON.
func TestOperatorSurface(t *testing.T) {
	s := newOperatorSetup(t)
	token := "t0ken-for-tests"
	s.p = startService(t, s.env, "start", "--config", s.cfg)
	waitFor(t, 60*time.Second, "the service to be ready", func() bool { return httpStatus(s.addr, "/readyz") == http.StatusOK })
	if c := httpStatus(s.addr, "/metrics"); c != http.StatusUnauthorized {
		t.Fatalf("unexpected status of /metrics without the token; got %d; want 401", c)
	}
	s.db.Exec(fmt.Sprintf(`INSERT INTO t_ok SELECT g, g FROM generate_series(1, %d) g`, okEvents))
	s.db.Exec(fmt.Sprintf(`INSERT INTO t_bad SELECT g, g FROM generate_series(1, %d) g`, badEvents))
	var m map[string]float64
	waitFor(t, 60*time.Second, "every event settled", func() bool {
		m = scrape(t, s.addr, token)
		return m["observer_dlq_items_total"] == badEvents && m["observer_actions_executed_total{action_type=\"file\"}"] == okEvents
	})
	// The checkpoint writer, the heartbeat and the slot monitor run on their own periods.
	waitFor(t, 30*time.Second, "checkpoints of both actions, a heartbeat and a slot reading", func() bool {
		m := scrape(t, s.addr, token)
		return pgtest.QueryValue[int64](s.db, `SELECT count(*) FROM observer_checkpoints`) == 3 &&
			m[`observer_listener_health{listener_id="listener-1"}`] == 1 && m["observer_slot_active"] == 1
	})
	m = scrape(t, s.addr, token)

	t.Run("metrics", func(t *testing.T) {
		total := float64(okEvents + badEvents)
		f := func(series string, want float64) {
			t.Helper()
			if got := metric(t, m, series); got != want {
				t.Fatalf("unexpected %s; got %v; want %v", series, got, want)
			}
		}
		f(`observer_events_processed_total{listener_id="listener-1"}`, total)
		f(`observer_events_matched_total{listener_id="listener-1"}`, total)
		f(`observer_actions_executed_total{action_type="file"}`, okEvents)
		f(`observer_actions_failed_total{action_type="file"}`, badEvents*attempts)
		f(`observer_action_retries_total{action_type="file"}`, badEvents*(attempts-1))
		f(`observer_dlq_writes_total{action_type="file"}`, badEvents)
		f(`observer_dlq_items_total`, badEvents)
		f(`observer_event_processing_duration_seconds_count`, total)
		f(`observer_event_processing_duration_seconds_bucket{le="+Inf"}`, total)
		f(`observer_action_duration_seconds_count{action_type="file"}`, okEvents+badEvents*attempts)
		f(`observer_action_duration_seconds_bucket{action_type="file",le="+Inf"}`, okEvents+badEvents*attempts)
		f(`observer_listener_health{listener_id="listener-1"}`, 1)
		f(`observer_replication_connected`, 1)
		f(`observer_replication_reconnects_total`, 0)
		f(`observer_slot_wal_status{status="reserved"}`, 1)
		f(`observer_slot_wal_status{status="lost"}`, 0)
		f(`observer_slot_active`, 1)
		f(`observer_inflight_bytes`, 0)
		f(`observer_dedup_dropped_total{layer="cache"}`, 0)
		f(`observer_cache_hit_rate`, 0) // inserts only: nothing looked up
		for _, series := range []string{"observer_checkpoint_age_seconds", "observer_replication_lag_bytes", "observer_replication_lag_seconds",
			"observer_replication_received_lsn", "observer_replication_confirmed_lsn", "observer_slot_safe_wal_size_bytes",
			"observer_wal_rate_bytes_per_second", "observer_replication_retained_bytes", "observer_replay_window_held_bytes"} {
			if v := metric(t, m, series); v < -1 {
				t.Fatalf("unexpected %s %v", series, v)
			}
		}
		if metric(t, m, "observer_replication_received_lsn") == 0 {
			t.Fatalf("observer_replication_received_lsn is 0 after %v events", total)
		}
		// The shipped alert rules and dashboard use only metrics that exist.
		names := map[string]bool{}
		for series := range m {
			name, _ := promtext.SplitSeries(series)
			names[name] = true
		}
		// Series of one table's snapshot exist once a snapshot has run; no snapshot runs
		// here. TestSnapshotInitialOnFreshSlot checks that /metrics exports each of them then.
		for _, name := range []string{"observer_snapshot_rows_total", "observer_snapshot_chunks_total", "observer_snapshot_remaining_rows"} {
			names[name] = true
		}
		for _, file := range []string{"../../configs/prometheus/alerts.yaml", "../../configs/grafana/dashboard.json"} {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			for _, ref := range regexp.MustCompile(`observer_[a-z_]+`).FindAllString(string(data), -1) {
				// The transport's series exist with transport.type nats:
				// TestTransportExecutorKilled checks them.
				if !names[ref] && !strings.HasPrefix(ref, "observer_transport_") {
					t.Errorf("%s refers to %s, which /metrics does not export", file, ref)
				}
			}
		}
	})

	var bad dlq.Item
	t.Run("cli running", func(t *testing.T) {
		s.run(t, 0, []string{"Leader: listener-1 (1/1 healthy)", "Observer status from the running service", "wal_status reserved",
			fmt.Sprintf("DLQ: %d pending items", badEvents), "ok.out", "bad.out"}, "status")
		s.run(t, 0, []string{"Listeners:", "listener-1", "streaming", "safe_wal_size", "Replay window: off"}, "status", "--detailed")
		var st statusDoc
		s.json(t, &st, "status", "--detailed")
		if st.Source != "service" || st.Leader != (leaderDoc{ListenerID: "listener-1", Healthy: 1, Total: 1}) || st.DLQ.Pending != badEvents || st.Stream == nil ||
			!st.Stream.Ready || len(st.Checkpoints) != 3 || st.SlotHealth.WALStatus != "reserved" {
			t.Fatalf("unexpected status document %+v", st)
		}

		r := s.run(t, 0, []string{fmt.Sprintf(`observer_events_processed_total{listener_id="listener-1"} %d`, okEvents+badEvents),
			`observer_action_duration_seconds_p99{action_type="file"}`, "observer_cache_hit_rate"}, "metrics")
		if !strings.Contains(r.stdout, "observer_actions_failed_total") {
			t.Fatalf("metrics lacks the failed counter:\n%s", r.stdout)
		}
		r = s.run(t, 0, []string{fmt.Sprintf(`observer_actions_failed_total{action_type="file"} %d`, badEvents*attempts)}, "metrics", "--metric", "observer_actions_failed")
		if n := strings.Count(strings.TrimSpace(r.stdout), "\n") + 1; n != 1 {
			t.Fatalf("--metric kept %d lines; want 1:\n%s", n, r.stdout)
		}
		var mj struct {
			Samples   []promtext.Sample   `json:"samples"`
			Quantiles []promtext.Quantile `json:"quantiles"`
		}
		s.json(t, &mj, "metrics", "--metric", "observer_action_duration_seconds")
		if len(mj.Samples) == 0 || len(mj.Quantiles) != 3 || mj.Quantiles[2].Count != okEvents+badEvents*attempts {
			t.Fatalf("unexpected metrics JSON %+v", mj)
		}

		r = s.run(t, 0, []string{"dead_lettered", "delivered", "observer ok: matched"}, "debug-event", "--history", "30")
		var evs []pipeline.DebugEvent
		s.json(t, &evs, "debug-event", "--history", "5")
		if len(evs) != 5 {
			t.Fatalf("unexpected history length %d", len(evs))
		}
		s.run(t, 0, []string{"Event " + evs[0].ID}, "debug-event", "--event-id", evs[0].ID)
		r = s.run(t, 1, nil, "debug-event", "--event-id", "0/1:1")
		if !strings.Contains(r.stderr, "not in the service's recent event history") {
			t.Fatalf("unexpected message for an unknown event: %s", r.stderr)
		}
		s.run(t, 0, []string{"Row cache: hit rate", "Dedup cache:"}, "cache-stats")
		var cs cacheStatsDoc
		s.json(t, &cs, "cache-stats")
		if !cs.RowCache.Enabled || !cs.Dedup.Enabled || cs.Dedup.Entries == 0 {
			t.Fatalf("unexpected cache stats %+v", cs)
		}

		s.run(t, 0, []string{fmt.Sprintf("%d pending items", badEvents), "bad.out", "no space left on device"}, "dlq", "stats", "--by-observer", "--by-error")
		var items []dlq.Item
		s.json(t, &items, "dlq", "list", "--observer", "bad")
		if len(items) != badEvents {
			t.Fatalf("unexpected DLQ list %+v", items)
		}
		bad = items[0]
		s.run(t, 0, []string{bad.EventID, "no space left on device", `"table": "t_bad"`}, "dlq", "show", fmt.Sprint(bad.ID))
		// The receiver is still broken: the retry fails, the item stays pending.
		r = s.run(t, 1, nil, "dlq", "retry", fmt.Sprint(bad.ID))
		if !strings.Contains(r.stderr, "delivery failed again") {
			t.Fatalf("unexpected message of a failed retry: %s", r.stderr)
		}
		s.run(t, 2, nil, "dlq", "show", "dlq-001")
	})

	if code := s.p.stop(); code != 0 && code != 1 { // closing /dev/full fails its fsync
		t.Fatalf("unexpected exit code after SIGTERM; got %d\n%s", code, s.p.output())
	}

	t.Run("cli stopped", func(t *testing.T) {
		r := s.run(t, 0, []string{"service not running (admin API unreachable at http://" + s.addr, "showing state from PostgreSQL",
			"Leader: none (0/1 healthy)", fmt.Sprintf("DLQ: %d pending items", badEvents)}, "status")
		_ = r
		s.run(t, 0, []string{"stopped", "safe_wal_size"}, "status", "--detailed")
		var st statusDoc
		s.json(t, &st, "status")
		if st.Source != "postgres" || st.Stream != nil || st.Leader.Healthy != 0 || len(st.Listeners) != 1 || st.Listeners[0].State != "stopped" {
			t.Fatalf("unexpected status document of a stopped service %+v", st)
		}
		for _, args := range [][]string{{"metrics"}, {"debug-event", "--history", "3"}, {"cache-stats"}, {"replay", "--from-lsn", "0/1"}} {
			r := s.run(t, exitUnavailable, nil, args...)
			if !strings.Contains(r.stderr, "service not running") {
				t.Fatalf("%v: unexpected message: %s", args, r.stderr)
			}
		}
		s.run(t, 0, []string{fmt.Sprintf("%d pending items", badEvents)}, "dlq", "stats")

		// The receiver recovers: retry delivers the parked event with its id.
		if err := os.Remove(s.badLink); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(filepath.Join(s.dir, "recovered.jsonl"), s.badLink); err != nil {
			t.Fatal(err)
		}
		s.run(t, 0, []string{fmt.Sprintf("Item %d delivered (event %s", bad.ID, bad.EventID)}, "dlq", "retry", fmt.Sprint(bad.ID))
		got := readEvents(t, filepath.Join(s.dir, "recovered.jsonl"))
		if len(got) != 1 || got[0].ID != bad.EventID || got[0].Table != "t_bad" {
			t.Fatalf("unexpected re-delivered events %+v; want one with id %s", got, bad.EventID)
		}
		var it dlq.Item
		s.json(t, &it, "dlq", "show", fmt.Sprint(bad.ID))
		if it.Status != "delivered" || it.Retries != 2 || it.LastRetryError != nil {
			t.Fatalf("unexpected item after a successful retry %+v", it)
		}
		var items []dlq.Item
		s.json(t, &items, "dlq", "list")
		if len(items) != badEvents-1 {
			t.Fatalf("unexpected pending items after a retry: %d", len(items))
		}
		s.run(t, 0, []string{fmt.Sprintf("Removed item %d", items[0].ID)}, "dlq", "remove", fmt.Sprint(items[0].ID))
		s.run(t, 1, nil, "dlq", "show", fmt.Sprint(items[0].ID))
		s.run(t, 0, []string{"Would retry 1 item\n"}, "dlq", "retry-all", "--dry-run")
		var res struct {
			Retried, Delivered, Failed int
		}
		s.json(t, &res, "dlq", "retry-all", "--observer", "bad")
		if res.Retried != 1 || res.Delivered != 1 || res.Failed != 0 {
			t.Fatalf("unexpected retry-all result %+v", res)
		}
		if got := readEvents(t, filepath.Join(s.dir, "recovered.jsonl")); len(got) != 2 || got[1].ID != items[1].EventID {
			t.Fatalf("unexpected events after retry-all %+v", got)
		}
		var stats dlq.Stats
		s.json(t, &stats, "dlq", "stats")
		if stats.Pending != 0 || stats.Delivered != 2 {
			t.Fatalf("unexpected final DLQ stats %+v", stats)
		}
		var js json.RawMessage
		s.json(t, &js, "dlq", "list", "--status", "all")
	})
}
