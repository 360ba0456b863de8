package pipeline

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/rs/zerolog"
	"go.uber.org/goleak"

	"github.com/fraiseql/fraiseql-observers/decoder"
	"github.com/fraiseql/fraiseql-observers/internal/promtext"
	"github.com/fraiseql/fraiseql-observers/lsn"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// recorder is an in-process sink: it records deliveries per key and can be scripted to
// fail or to take time.
type recorder struct {
	mu        sync.Mutex
	byKey     map[string][]lsn.Position
	all       []lsn.Position
	fail      func(ev *decoder.Event, attempt int) error
	delay     func() time.Duration
	attempts  map[lsn.Position]int
	inFlight  atomic.Int32
	maxFlight atomic.Int32
}

func newRecorder() *recorder {
	return &recorder{byKey: map[string][]lsn.Position{}, attempts: map[lsn.Position]int{}}
}

func (r *recorder) Deliver(ctx context.Context, ev *decoder.Event) error {
	n := r.inFlight.Add(1)
	defer r.inFlight.Add(-1)
	for {
		m := r.maxFlight.Load()
		if n <= m || r.maxFlight.CompareAndSwap(m, n) {
			break
		}
	}
	if r.delay != nil {
		select {
		case <-time.After(r.delay()):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.attempts[ev.ID]++
	if r.fail != nil {
		if err := r.fail(ev, r.attempts[ev.ID]); err != nil {
			return err
		}
	}
	k := string(ev.Key.Values[0])
	r.byKey[k] = append(r.byKey[k], ev.ID)
	r.all = append(r.all, ev.ID)
	return nil
}

type memDLQ struct {
	mu      sync.Mutex
	letters []DeadLetter
	fail    atomic.Int32 // number of Puts to fail first
}

func (d *memDLQ) Put(ctx context.Context, dl DeadLetter) error {
	if d.fail.Add(-1) >= 0 {
		return errors.New("dlq down")
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.letters = append(d.letters, dl)
	return nil
}

type permanentErr struct{ error }

func (permanentErr) Retryable() bool { return false }

type harness struct {
	t    *testing.T
	wm   *lsn.Watermark[lsn.LSN]
	p    *Pipeline
	stop func()
}

func start(t *testing.T, opts Options) *harness {
	t.Helper()
	wm := lsn.NewWatermark(lsn.CompareLSNs)
	wm.Reset(0)
	opts.Acker = wm
	opts.Logger = zerolog.Nop()
	p, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	h := &harness{t: t, wm: wm, p: p}
	var once sync.Once
	h.stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("run: %v", err)
			}
		})
	}
	t.Cleanup(h.stop)
	return h
}

// push sends txs transactions of keys×perKey updates, ticketed like the session does.
func (h *harness) push(txs, perTx, keys int) []*decoder.Event {
	var all []*decoder.Event
	n := 0
	for tx := 1; tx <= txs; tx++ {
		commit := lsn.LSN(tx * 1000)
		var batch []*decoder.Event
		var tickets []lsn.Ticket
		for i := 1; i <= perTx; i++ {
			k := n % keys
			n++
			ev := &decoder.Event{
				ID: lsn.Position{Commit: commit, Ord: uint32(i)}, Schema: "public", Table: "t", Op: decoder.OpUpdate,
				Key: &decoder.Row{Names: []string{"id"}, Values: []json.RawMessage{json.RawMessage(strconv.Itoa(k))}},
			}
			batch = append(batch, ev)
			tickets = append(tickets, h.wm.Dispatch(commit))
		}
		h.p.Push(batch, tickets)
		h.wm.Ack(h.wm.Dispatch(commit + 100)) // commit marker at the end LSN
		all = append(all, batch...)
	}
	return all
}

func (h *harness) waitAcked(want lsn.LSN) {
	h.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if got, _ := h.wm.Acked(); got >= want {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	got, _ := h.wm.Acked()
	h.t.Fatalf("watermark did not reach %v; got %v; in flight %d bytes", want, got, h.p.InFlightBytes())
}

func observer(sink Sink, conc int, retry RetryPolicy, onFailure FailurePolicy) *Observer {
	return &Observer{Name: "o", Schema: "public", Table: "t", Ops: []decoder.Op{decoder.OpUpdate},
		Actions: []*Action{{ID: "o.0", Type: "test", Sink: sink, Concurrency: conc, Retry: retry, OnFailure: onFailure}}}
}

func TestPerKeyOrderWithConcurrency(t *testing.T) {
	rec := newRecorder()
	rec.delay = func() time.Duration { return time.Duration(rand.IntN(300)) * time.Microsecond }
	h := start(t, Options{Observers: []*Observer{observer(rec, 8, RetryPolicy{}, FailureLog)}})
	evs := h.push(100, 100, 100)
	h.waitAcked(100*1000 + 100)
	if len(rec.all) != len(evs) {
		t.Fatalf("unexpected delivery count; got %d; want %d", len(rec.all), len(evs))
	}
	for k, ids := range rec.byKey {
		for i := 1; i < len(ids); i++ {
			if ids[i].Compare(ids[i-1]) <= 0 {
				t.Fatalf("key %s delivered out of commit order: %v after %v", k, ids[i], ids[i-1])
			}
		}
	}
	if rec.maxFlight.Load() < 2 {
		t.Fatalf("deliveries never overlapped with 8 workers (max in flight %d)", rec.maxFlight.Load())
	}
}

func TestRetryThenDeliver(t *testing.T) {
	rec := newRecorder()
	rec.fail = func(ev *decoder.Event, attempt int) error {
		if attempt < 3 {
			return errors.New("temporary")
		}
		return nil
	}
	h := start(t, Options{Observers: []*Observer{observer(rec, 2, RetryPolicy{MaxAttempts: 5, Strategy: BackoffFixed, Initial: time.Millisecond}, FailureDLQ)}})
	h.push(3, 10, 5)
	h.waitAcked(3*1000 + 100)
	for id, n := range rec.attempts {
		if n != 3 {
			t.Fatalf("unexpected attempts for %v; got %d; want 3", id, n)
		}
	}
}

func TestFailureHoldsOnlyItsKeyAndGoesToDLQ(t *testing.T) {
	rec := newRecorder()
	release := make(chan struct{})
	var released atomic.Bool
	rec.fail = func(ev *decoder.Event, attempt int) error {
		if string(ev.Key.Values[0]) == "0" {
			if !released.Load() {
				return errors.New("key 0 is down")
			}
			return permanentErr{errors.New("rejected")}
		}
		return nil
	}
	dlq := &memDLQ{}
	dlq.fail.Store(3) // the first DLQ writes fail: the event must be held, not lost
	h := start(t, Options{DLQ: dlq, Observers: []*Observer{observer(rec, 4,
		RetryPolicy{MaxAttempts: 1000, Strategy: BackoffFixed, Initial: 2 * time.Millisecond}, FailureDLQ)}})
	h.push(10, 10, 10)
	// Every other key gets through while key 0 keeps failing.
	deadline := time.Now().Add(10 * time.Second)
	for {
		rec.mu.Lock()
		n := len(rec.all)
		rec.mu.Unlock()
		if n == 90 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("other keys were held back by the failing key: %d of 90 delivered", n)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if got, _ := h.wm.Acked(); got >= 1000 {
		t.Fatalf("watermark passed an unsettled event: %v", got)
	}
	released.Store(true)
	close(release)
	h.waitAcked(10*1000 + 100)
	dlq.mu.Lock()
	defer dlq.mu.Unlock()
	if len(dlq.letters) != 10 {
		t.Fatalf("unexpected DLQ size; got %d; want 10", len(dlq.letters))
	}
	for i := 1; i < len(dlq.letters); i++ {
		if dlq.letters[i].Event.ID.Compare(dlq.letters[i-1].Event.ID) <= 0 {
			t.Fatalf("dead letters of one key out of order")
		}
	}
}

func TestDedupDropsReplays(t *testing.T) {
	rec := newRecorder()
	d, err := NewDedup(1000)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	h := start(t, Options{Dedup: d, Observers: []*Observer{observer(rec, 4, RetryPolicy{}, FailureLog)}})
	evs := h.push(5, 10, 10)
	h.waitAcked(5*1000 + 100)
	d.Wait()
	// Replay: the same events again with new tickets, as after a reconnect.
	var replay []*decoder.Event
	var tickets []lsn.Ticket
	for _, ev := range evs {
		cp := &decoder.Event{ID: ev.ID, Schema: ev.Schema, Table: ev.Table, Op: ev.Op, Key: ev.Key}
		replay = append(replay, cp)
		tickets = append(tickets, h.wm.Dispatch(ev.ID.Commit))
	}
	h.p.Push(replay, tickets)
	h.wm.Ack(h.wm.Dispatch(6000))
	h.waitAcked(6000)
	if len(rec.all) != len(evs) {
		t.Fatalf("replayed events were delivered again: %d deliveries for %d events", len(rec.all), len(evs))
	}
	if p := h.p.Progress()["o.0"]; p != (lsn.Position{Commit: 5000, Ord: 10}) {
		t.Fatalf("unexpected progress %v", p)
	}
}

func TestStartSkipsCheckpointed(t *testing.T) {
	rec := newRecorder()
	h := start(t, Options{Start: map[string]lsn.Position{"o.0": {Commit: 2000, Ord: 5}},
		Observers: []*Observer{observer(rec, 1, RetryPolicy{}, FailureLog)}})
	h.push(3, 10, 10)
	h.waitAcked(3*1000 + 100)
	if len(rec.all) != 15 {
		t.Fatalf("unexpected delivery count; got %d; want 15 (5 of tx 2 and 10 of tx 3)", len(rec.all))
	}
	if rec.all[0] != (lsn.Position{Commit: 2000, Ord: 6}) {
		t.Fatalf("unexpected first delivery %v", rec.all[0])
	}
}

func TestBackpressure(t *testing.T) {
	rec := newRecorder()
	block := make(chan struct{})
	rec.delay = func() time.Duration { <-block; return 0 }
	h := start(t, Options{MaxInFlightBytes: 4096, Observers: []*Observer{observer(rec, 1, RetryPolicy{}, FailureLog)}})
	h.push(1, 50, 50)
	if !h.p.Full() {
		t.Fatalf("pipeline not full with %d bytes in flight", h.p.InFlightBytes())
	}
	close(block)
	select {
	case <-h.p.Ready():
	case <-time.After(10 * time.Second):
		t.Fatalf("Ready never fired")
	}
	h.waitAcked(1100)
	if h.p.InFlightBytes() != 0 {
		t.Fatalf("bytes still in flight after everything settled: %d", h.p.InFlightBytes())
	}
}

// TestInflightGaugeFollowsTheLatestPipeline: an executor builds one pipeline per
// generation of partitions, one after the other, on the process's metric set.
// observer_inflight_bytes must report the pipeline that runs now, not the first one
// built (it read 0 from a stopped pipeline for the rest of the process's life).
func TestInflightGaugeFollowsTheLatestPipeline(t *testing.T) {
	set := metrics.NewSet()
	gauge := func() string {
		var b bytes.Buffer
		set.WritePrometheus(&b)
		for _, s := range promtext.Parse(b.String()) {
			if s.Name == "observer_inflight_bytes" {
				return strconv.FormatFloat(s.Value, 'f', -1, 64)
			}
		}
		return "missing"
	}
	for gen := range 3 {
		rec := newRecorder()
		block := make(chan struct{})
		rec.delay = func() time.Duration { <-block; return 0 }
		h := start(t, Options{Metrics: set, Observers: []*Observer{observer(rec, 1, RetryPolicy{}, FailureLog)}})
		release := sync.OnceFunc(func() { close(block) })
		t.Cleanup(release) // before the harness stops
		h.push(1, 50, 50)
		if got, want := gauge(), strconv.FormatInt(h.p.InFlightBytes(), 10); got != want || want == "0" {
			t.Fatalf("generation %d: unexpected observer_inflight_bytes; got %s; want %s (this pipeline's)", gen, got, want)
		}
		release()
		h.waitAcked(1100)
		h.stop()
	}
}

func TestDrain(t *testing.T) {
	rec := newRecorder()
	rec.delay = func() time.Duration { return time.Millisecond }
	h := start(t, Options{Observers: []*Observer{observer(rec, 2, RetryPolicy{}, FailureLog)}})
	h.push(2, 20, 5)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.p.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	if len(rec.all) != 40 {
		t.Fatalf("drain returned before everything was delivered: %d", len(rec.all))
	}
}

func TestRetryDelay(t *testing.T) {
	f := func(p RetryPolicy, attempt int, lo, hi time.Duration) {
		t.Helper()
		for i := 0; i < 50; i++ {
			if d := p.Delay(attempt); d < lo || d > hi {
				t.Fatalf("unexpected delay for attempt %d of %+v; got %v; want in [%v, %v]", attempt, p, d, lo, hi)
			}
		}
	}
	exp := RetryPolicy{Strategy: BackoffExponential, Initial: 100 * time.Millisecond, Max: time.Second}
	f(exp, 1, 75*time.Millisecond, 125*time.Millisecond)
	f(exp, 3, 300*time.Millisecond, 500*time.Millisecond)
	f(exp, 30, 750*time.Millisecond, 1250*time.Millisecond)
	lin := RetryPolicy{Strategy: BackoffLinear, Initial: 100 * time.Millisecond, Max: 250 * time.Millisecond}
	f(lin, 2, 200*time.Millisecond, 200*time.Millisecond)
	f(lin, 9, 250*time.Millisecond, 250*time.Millisecond)
	fixed := RetryPolicy{Strategy: BackoffFixed, Initial: 50 * time.Millisecond}
	f(fixed, 7, 50*time.Millisecond, 50*time.Millisecond)
}

func TestRetryable(t *testing.T) {
	if !Retryable(errors.New("x")) {
		t.Fatalf("plain errors must be retryable")
	}
	if Retryable(fmt.Errorf("wrapped: %w", permanentErr{errors.New("x")})) {
		t.Fatalf("a permanent error in the chain must not be retryable")
	}
	if Retryable(context.Canceled) {
		t.Fatalf("cancellation must not be retryable")
	}
}

type condFunc func(ev *decoder.Event) (bool, error)

func (f condFunc) Match(ev *decoder.Event) (bool, error) { return f(ev) }
func (f condFunc) String() string                        { return "test condition" }

func TestRecentEventsRecordVerdicts(t *testing.T) {
	rec := newRecorder()
	rec.fail = func(ev *decoder.Event, attempt int) error {
		if string(ev.Key.Values[0]) == "1" {
			return permanentErr{errors.New("rejected by the target")}
		}
		return nil
	}
	o := observer(rec, 2, RetryPolicy{MaxAttempts: 3}, FailureDLQ)
	o.Condition = condFunc(func(ev *decoder.Event) (bool, error) {
		switch string(ev.Key.Values[0]) {
		case "2":
			return false, nil
		case "3":
			return false, errors.New(`field "status" not in data`)
		}
		return true, nil
	})
	h := start(t, Options{DLQ: &memDLQ{}, Observers: []*Observer{o}})
	h.push(1, 4, 4) // keys 0..3
	h.waitAcked(1100)
	got := map[string]DebugObserver{}
	for _, d := range h.p.RecentEvents(10) {
		if len(d.Observers) != 1 {
			t.Fatalf("unexpected observers for %s: %+v", d.ID, d.Observers)
		}
		got[d.ID] = d.Observers[0]
	}
	if len(got) != 4 {
		t.Fatalf("unexpected number of recorded events %d", len(got))
	}
	check := func(id string, matched bool, status, condErr string) {
		t.Helper()
		o := got[id]
		if o.Matched != matched || o.ConditionError != condErr {
			t.Fatalf("%s: unexpected verdict %+v", id, o)
		}
		if status != "" && (len(o.Actions) != 1 || o.Actions[0].Status != status) {
			t.Fatalf("%s: unexpected action state %+v", id, o.Actions)
		}
	}
	check("0/3E8:1", true, statusDelivered, "")
	check("0/3E8:2", true, statusDLQ, "")
	check("0/3E8:3", false, "", "")
	check("0/3E8:4", false, "", `field "status" not in data`)
	if d, ok := h.p.FindEvent("0/3E8:2"); !ok || d.Observers[0].Actions[0].Attempts != 1 || d.Observers[0].Actions[0].LastError != "rejected by the target" {
		t.Fatalf("unexpected FindEvent result %+v %v", d, ok)
	}
}

// TestConditionFailureIsNotDropped: an event whose condition cannot be evaluated
// fails for each action of the observer: it is parked in the DLQ with the error
// (held while the DLQ write fails) or logged by the on_failure policy, never skipped
// silently, and the watermark does not pass it before then.
func TestConditionFailureIsNotDropped(t *testing.T) {
	rec := newRecorder()
	o := observer(rec, 2, RetryPolicy{MaxAttempts: 3}, FailureDLQ)
	o.Condition = condFunc(func(ev *decoder.Event) (bool, error) {
		if string(ev.Key.Values[0]) == "0" {
			return false, quotingErr{errors.New(`1:7: invalid operation: int(SSN-123-45-6789)`)}
		}
		return true, nil
	})
	logRec := newRecorder()
	ol := observer(logRec, 1, RetryPolicy{MaxAttempts: 1}, FailureLog)
	ol.Name, ol.Actions[0].ID, ol.Condition = "l", "l.0", o.Condition
	dlq := &memDLQ{}
	dlq.fail.Store(2) // a failing DLQ write holds the event
	h := start(t, Options{DLQ: dlq, Observers: []*Observer{o, ol}})
	h.push(3, 4, 4) // keys 0..3, key 0 once per transaction
	h.waitAcked(3*1000 + 100)
	dlq.mu.Lock()
	defer dlq.mu.Unlock()
	if len(dlq.letters) != 3 {
		t.Fatalf("unexpected dead letters; got %d; want 3 (one per failed condition)", len(dlq.letters))
	}
	for _, dl := range dlq.letters {
		if string(dl.Event.Key.Values[0]) != "0" || dl.Action != "o.0" || ErrorClass(dl.Err) != "condition_error" ||
			!strings.Contains(dl.Err.Error(), "SSN-123-45-6789") {
			t.Fatalf("unexpected dead letter %+v (%v)", dl, dl.Err)
		}
	}
	if len(rec.all) != 9 || len(logRec.all) != 9 {
		t.Fatalf("unexpected deliveries %d, %d; want 9 each", len(rec.all), len(logRec.all))
	}
	for _, d := range h.p.RecentEvents(20) {
		for _, ob := range d.Observers {
			if strings.Contains(ob.ConditionError, "SSN") {
				t.Fatalf("/debug/events quotes a row value: %q", ob.ConditionError)
			}
		}
	}
}

// TestStalled: the router reports itself stalled while one condition runs longer
// than the given time.
func TestStalled(t *testing.T) {
	rec := newRecorder()
	o := observer(rec, 1, RetryPolicy{MaxAttempts: 1}, FailureDLQ)
	entered, release := make(chan struct{}), make(chan struct{})
	o.Condition = condFunc(func(ev *decoder.Event) (bool, error) {
		close(entered)
		<-release
		return true, nil
	})
	h := start(t, Options{DLQ: &memDLQ{}, Observers: []*Observer{o}})
	if h.p.Stalled(0) {
		t.Fatal("stalled before any event")
	}
	h.push(1, 1, 1)
	<-entered
	deadline := time.Now().Add(10 * time.Second)
	for !h.p.Stalled(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("not stalled while a condition blocks the router")
		}
		time.Sleep(time.Millisecond)
	}
	close(release)
	h.waitAcked(1100)
	if h.p.Stalled(0) {
		t.Fatal("still stalled after the condition returned")
	}
}

// quotingErr quotes a row value in Error, like an expr built-in's error in an
// eval.Error, and withholds it in Redacted.
type quotingErr struct{ error }

func (quotingErr) Redacted() string { return "1:7: invalid operation (withheld)" }

// slowCond is a RouterCondition whose router budget runs out for the keys in slow:
// their verdict comes from Match, which waits for release.
type slowCond struct {
	slow    map[string]bool
	verdict func(ev *decoder.Event) (bool, error)
	entered chan string // receives the key of each Match that starts
	release chan struct{}
}

func (c *slowCond) Match(ev *decoder.Event) (bool, error) {
	c.entered <- string(ev.Key.Values[0])
	<-c.release
	return c.verdict(ev)
}

func (c *slowCond) TryMatch(ev *decoder.Event) (ok, done bool, err error) {
	if c.slow[string(ev.Key.Values[0])] {
		return false, false, nil
	}
	ok, err = c.verdict(ev)
	return ok, true, err
}

func (c *slowCond) String() string { return "slow condition" }

// TestSlowConditionHoldsOnlyItsRow: a condition the router cannot decide within its
// budget is evaluated by the action's worker, in the row's order: the other rows are
// routed and delivered meanwhile, the row's later events wait behind it, and a late
// verdict that does not hold, or fails, settles the event as an early one would.
func TestSlowConditionHoldsOnlyItsRow(t *testing.T) {
	rec := newRecorder()
	o := observer(rec, 4, RetryPolicy{MaxAttempts: 1}, FailureDLQ)
	o.Actions = append(o.Actions, &Action{ID: "o.1", Type: "test", Sink: newRecorder(), Concurrency: 2, Retry: RetryPolicy{MaxAttempts: 1}, OnFailure: FailureDLQ})
	cond := &slowCond{slow: map[string]bool{"0": true, "1": true, "2": true}, entered: make(chan string, 16), release: make(chan struct{}),
		verdict: func(ev *decoder.Event) (bool, error) {
			switch string(ev.Key.Values[0]) {
			case "1":
				return false, nil
			case "2":
				return false, errors.New("cannot evaluate")
			}
			return true, nil
		}}
	o.Condition = cond
	dlq := &memDLQ{}
	h := start(t, Options{DLQ: dlq, Observers: []*Observer{o}})
	release := sync.OnceFunc(func() { close(cond.release) })
	t.Cleanup(release) // runs before the pipeline stops, also when the test fails
	h.push(2, 5, 5)    // keys 0..4 in each of 2 transactions
	// Keys 0, 1 and 2 wait for their verdicts; 3 and 4 are delivered meanwhile.
	seen := map[string]bool{}
	for len(seen) < 3 {
		select {
		case k := <-cond.entered:
			seen[k] = true
		case <-time.After(30 * time.Second):
			t.Fatalf("the late conditions did not start; started %v", seen)
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		rec.mu.Lock()
		n3, n4, n0 := len(rec.byKey["3"]), len(rec.byKey["4"]), len(rec.byKey["0"])
		rec.mu.Unlock()
		if n0 != 0 {
			t.Fatal("key 0 delivered before its condition was decided")
		}
		if n3 == 2 && n4 == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the other rows were not delivered while a condition was slow; got %d and %d of 2", n3, n4)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if d, ok := h.p.FindEvent(lsn.Position{Commit: 1000, Ord: 1}.String()); !ok || !d.Observers[0].ConditionPending {
		t.Fatalf("unexpected debug record of the undecided event: %+v", d)
	}
	release()
	h.waitAcked(2*1000 + 100)
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if got := rec.byKey["0"]; len(got) != 2 || got[0].Commit != 1000 || got[1].Commit != 2000 {
		t.Fatalf("unexpected deliveries of key 0; got %v; want both, in commit order", got)
	}
	if len(rec.byKey["1"]) != 0 || len(rec.byKey["2"]) != 0 {
		t.Fatalf("unexpected deliveries of keys 1 and 2 (condition false, failed): %v, %v", rec.byKey["1"], rec.byKey["2"])
	}
	dlq.mu.Lock()
	defer dlq.mu.Unlock()
	if len(dlq.letters) != 4 { // key 2, twice, for each of the two actions
		t.Fatalf("unexpected dead letters; got %d; want 4", len(dlq.letters))
	}
	for _, dl := range dlq.letters {
		if string(dl.Event.Key.Values[0]) != "2" || ErrorClass(dl.Err) != "condition_error" {
			t.Fatalf("unexpected dead letter %+v (%v)", dl, dl.Err)
		}
	}
	d, _ := h.p.FindEvent(lsn.Position{Commit: 1000, Ord: 2}.String()) // key 1: did not hold
	if ob := d.Observers[0]; ob.ConditionPending || ob.ConditionValue == nil || *ob.ConditionValue || ob.Actions[0].Status != statusNotMatch {
		t.Fatalf("unexpected debug record of a late false verdict: %+v", ob)
	}
}
