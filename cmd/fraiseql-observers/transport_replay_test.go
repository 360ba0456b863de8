package main

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fraiseql/fraiseql-observers/dlq"
	"github.com/fraiseql/fraiseql-observers/lsn"
	"github.com/fraiseql/fraiseql-observers/service"
)

// configWith is the rig's configuration of one process, changed by edit.
func (r *transportRig) configWith(listener, addr string, edit func(string) string) string {
	r.t.Helper()
	data, err := os.ReadFile(r.config(listener, addr))
	if err != nil {
		r.t.Fatal(err)
	}
	return writeConfig(r.t, edit(string(data)))
}

// startWith is start with the configuration changed by edit; it returns the
// process, its admin address and its configuration file.
func (r *transportRig) startWith(role, listener string, edit func(string) string) (*proc, string, string) {
	r.t.Helper()
	addr := freeAddr(r.t)
	cfg := r.configWith(listener, addr, edit)
	return r.startConfigured(role, listener, addr, cfg), addr, cfg
}

// TestTransportReplay: with the nats transport, replay --observer on the reader
// publishes the range again and the executor delivers exactly the range's events
// again, with their original ids, for that observer only; replay on an executor
// names the reader instead.
func TestTransportReplay(t *testing.T) {
	r := newTransportRig(t)
	edit := func(c string) string {
		// A second observer of the same rows, whose deliveries say X-Listener: other.
		return c + fmt.Sprintf(`  other:
    entity: public.t
    event_type: [INSERT, UPDATE]
    actions: [{type: webhook, url: %q, allow_private_networks: true, headers: {X-Listener: other}}]
replay_window: 1GiB
`, r.hook.srv.URL+"/hook")
	}
	reader, raddr, rcfg := r.startWith(service.RoleReader, "reader-1", edit)
	_, _, ecfg := r.startWith(service.RoleExecutor, "exec-1", edit)
	waitOwners(t, raddr, 1)
	r.write(20)
	r.check()
	var first []hookDelivery // observer rows's
	waitFor(t, 60*time.Second, "both observers' deliveries", func() bool {
		first = first[:0]
		for _, d := range r.hook.deliveries() {
			if d.listener == "exec-1" {
				first = append(first, d)
			}
		}
		return r.hook.count() == 2*len(first) && len(first) == changes(r.committed())
	})
	before := r.hook.count()

	// The range: the 8th to the 12th transaction.
	byCommit := map[lsn.LSN][]hookDelivery{}
	for _, d := range first {
		byCommit[mustPosition(t, d.eventID).Commit] = append(byCommit[mustPosition(t, d.eventID).Commit], d)
	}
	var commits []lsn.LSN
	for c := range byCommit {
		commits = append(commits, c)
	}
	sort.Slice(commits, func(i, j int) bool { return commits[i] < commits[j] })
	from, to := commits[7], commits[11]
	want := map[string]hookDelivery{}
	for _, c := range commits[7:12] {
		for _, d := range byCommit[c] {
			want[d.eventID] = d
		}
	}

	res := cli(t, nil, "replay", "--from-lsn", from.String(), "--config", ecfg)
	if res.code == 0 || !strings.Contains(res.stderr, "this instance (exec-1) runs --role executor and does not read slot obs_slot: replay on the reader that leads it (reader-1)") {
		t.Fatalf("unexpected answer of a replay on an executor (exit code %d): %s", res.code, res.stderr)
	}
	expectCLI(t, nil, 0, []string{"Replaying transactions committed from " + from.String() + " to " + to.String() + " for 1 action: [rows.0]"},
		"replay", "--from-lsn", from.String(), "--to-lsn", to.String(), "--observer", "rows", "--config", rcfg)
	waitFor(t, 60*time.Second, "the range delivered again and every message acknowledged", func() bool {
		if r.hook.count() < before+len(want) {
			return false
		}
		for _, p := range transportStatus(t, raddr).Partitions {
			if p.Pending+uint64(p.AckPending) != 0 {
				return false
			}
		}
		return true
	})
	if got := scrape(t, raddr, "")["observer_transport_replayed_total"]; got != float64(len(want)) {
		t.Fatalf("unexpected observer_transport_replayed_total; got %v; want %d", got, len(want))
	}
	again := r.hook.deliveries()[before:]
	if len(again) != len(want) {
		t.Fatalf("unexpected deliveries after the replay; got %d; want %d", len(again), len(want))
	}
	for _, d := range again {
		if d.listener != "exec-1" {
			t.Fatalf("replay --observer rows delivered event %s for observer other too", d.eventID)
		}
		w, ok := want[d.eventID]
		if !ok {
			t.Fatalf("replay delivered event %s (row %d v %d), which is outside %s..%s or delivered again twice", d.eventID, d.row, d.v, from, to)
		}
		if d.row != w.row || d.v != w.v {
			t.Fatalf("event %s delivered again as row %d v %d; first as row %d v %d", d.eventID, d.row, d.v, w.row, w.v)
		}
		delete(want, d.eventID)
	}
	// New changes go on as before.
	r.write(5)
	r.check()
	if code := reader.stop(); code != 0 {
		t.Fatalf("unexpected exit code of the reader: %d", code)
	}
}

// TestTransportDLQRetry: an event an executor dead-lettered (the receiver answered
// 500, on_failure dlq) is listed by dlq list and delivered by dlq retry, with its
// original id.
func TestTransportDLQRetry(t *testing.T) {
	r := newTransportRig(t)
	var failing atomic.Bool
	failing.Store(true)
	broken := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if failing.Load() {
			http.Error(w, "down", http.StatusInternalServerError)
			return
		}
		r.hook.srv.Config.Handler.ServeHTTP(w, req)
	}))
	t.Cleanup(broken.Close)
	edit := func(c string) string {
		c = strings.Replace(c, "retry: {max_attempts: 1000, initial_delay: 20ms, max_delay: 200ms}",
			"retry: {max_attempts: 2, initial_delay: 10ms, max_delay: 10ms}\n    on_failure: dlq", 1)
		return strings.Replace(c, r.hook.srv.URL+"/hook", broken.URL+"/hook", 1)
	}
	_, raddr, _ := r.startWith(service.RoleReader, "reader-1", edit)
	_, _, ecfg := r.startWith(service.RoleExecutor, "exec-1", edit)
	waitOwners(t, raddr, 1)
	r.write(1) // rows 1 and 2
	var items []dlq.Item
	waitFor(t, 60*time.Second, "two items in the DLQ", func() bool {
		cliJSON(t, nil, &items, "dlq", "list", "--config", ecfg)
		return len(items) == 2
	})
	failing.Store(false)
	ids := map[string]bool{}
	for _, it := range items {
		if it.Action != "rows.0" || it.ErrorClass == "" {
			t.Fatalf("unexpected DLQ item %+v", it)
		}
		expectCLI(t, nil, 0, []string{fmt.Sprintf("Item %d delivered (event %s", it.ID, it.EventID)}, "dlq", "retry", fmt.Sprint(it.ID), "--config", ecfg)
		ids[it.EventID] = true
	}
	got := r.hook.deliveries()
	if len(got) != 2 || !ids[got[0].eventID] || !ids[got[1].eventID] || got[0].eventID == got[1].eventID {
		t.Fatalf("unexpected deliveries of the retries %+v; want the ids %v", got, ids)
	}
	cliJSON(t, nil, &items, "dlq", "list", "--config", ecfg)
	if len(items) != 0 {
		t.Fatalf("unexpected pending items after the retries: %+v", items)
	}
}
