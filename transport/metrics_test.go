package transport

import (
	"bufio"
	"bytes"
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/fraiseql/fraiseql-observers/decoder"
	"github.com/fraiseql/fraiseql-observers/internal/sinktest"
)

// metricValue returns the value of the series name (with its labels, as written
// in the Prometheus text format) in set, and false when set has no such series.
func metricValue(set *metrics.Set, name string) (float64, bool) {
	var buf bytes.Buffer
	set.WritePrometheus(&buf)
	sc := bufio.NewScanner(&buf)
	for sc.Scan() {
		series, value, ok := strings.Cut(sc.Text(), " ")
		if !ok || series != name {
			continue
		}
		v, err := strconv.ParseFloat(value, 64)
		return v, err == nil
	}
	return 0, false
}

func metricIs(set *metrics.Set, name string, want float64) bool {
	v, ok := metricValue(set, name)
	return ok && v == want
}

// The publisher's metrics: latency and published counts for every stored event,
// the stream's backlog while no executor runs, failures while NATS is away.
func TestPublisherMetrics(t *testing.T) {
	srv, url := startNATS(t)
	c, _ := connect(t, testConfig(url))
	set := metrics.NewSet()
	r, _ := startPublisherOpts(t, c, PublisherOptions{Metrics: set, BacklogInterval: 50 * time.Millisecond})
	evs := sinktest.Events(600, 40)
	r.push(t, evs[:500])
	r.waitAcked(t, evs[:500], time.Minute)
	waitFor(t, time.Minute, "observer_transport_stream_messages at 500", func() bool {
		return metricIs(set, `observer_transport_stream_messages`, 500)
	})
	for name, want := range map[string]float64{
		`observer_transport_published_total`:                            500,
		`observer_transport_publish_duration_seconds_count`:             500,
		`observer_transport_publish_failures_total`:                     0,
		`observer_transport_available`:                                  1,
		`observer_transport_publish_pending`:                            0,
		`observer_transport_backlog_errors_total`:                       0,
		`observer_transport_publish_duplicates_total`:                   0,
		`observer_transport_publish_resyncs_total`:                      0,
		`observer_transport_publish_duration_seconds_bucket{le="+Inf"}`: 500,
	} {
		if got, ok := metricValue(set, name); !ok || got != want {
			t.Fatalf("unexpected %s; got %v (present %v); want %v", name, got, ok, want)
		}
	}

	srv.Kill()
	done := make(chan struct{})
	go func() { defer close(done); r.push(t, evs[500:]) }()
	waitFor(t, time.Minute, "publish failures and backlog read errors counted", func() bool {
		f, _ := metricValue(set, `observer_transport_publish_failures_total`)
		e, _ := metricValue(set, `observer_transport_backlog_errors_total`)
		return f > 0 && e > 0 && metricIs(set, `observer_transport_available`, 0) &&
			metricIs(set, `observer_transport_publish_pending`, 100)
	})
	srv.Start()
	<-done
	r.waitAcked(t, evs, 2*time.Minute)
	waitFor(t, time.Minute, "observer_transport_stream_messages at 600", func() bool {
		return metricIs(set, `observer_transport_stream_messages`, 600) && metricIs(set, `observer_transport_published_total`, 600)
	})
}

// gateSink holds every delivery until open is closed.
type gateSink struct {
	o    *oracle
	open chan struct{}
}

func (s gateSink) Deliver(ctx context.Context, ev *decoder.Event) error {
	select {
	case <-s.open:
	case <-ctx.Done():
		return ctx.Err()
	}
	s.o.add(delivery{executor: "e1", id: ev.ID.String(), key: rowKey(ev)})
	return nil
}

// The executor's metrics: partitions claimed and owned, each owned partition's
// backlog (pending and ack-pending, read from its consumer) while deliveries are
// held and after they went through, and on leaving the partitions released and
// their backlog series removed.
func TestExecutorMetrics(t *testing.T) {
	_, url := startNATS(t)
	cfg := testConfig(url)
	c, _ := connect(t, cfg)
	r, _ := startPublisher(t, c)
	evs := sinktest.Events(2000, 40)
	r.push(t, evs)
	r.waitAcked(t, evs, time.Minute)

	set := metrics.NewSet()
	o := &oracle{}
	gate := gateSink{o: o, open: make(chan struct{})}
	e, stop := runExecutorGate(t, cfg, gate, ExecutorOptions{Metrics: set, BacklogInterval: 50 * time.Millisecond})
	waitFor(t, time.Minute, "every partition owned and its backlog read", func() bool {
		if len(e.Owned()) != cfg.Partitions {
			return false
		}
		var held float64
		for p := 0; p < cfg.Partitions; p++ {
			pending, ack := backlogNames(p)
			n, ok1 := metricValue(set, pending)
			a, ok2 := metricValue(set, ack)
			if !ok1 || !ok2 {
				return false
			}
			held += n + a
		}
		return held == float64(len(evs))
	})
	for name, want := range map[string]float64{
		`observer_transport_owned_partitions`:          float64(cfg.Partitions),
		`observer_transport_partitions_claimed_total`:  float64(cfg.Partitions),
		`observer_transport_partitions_released_total`: 0,
		`observer_transport_partitions_lost_total`:     0,
	} {
		if got, ok := metricValue(set, name); !ok || got != want {
			t.Fatalf("unexpected %s; got %v (present %v); want %v", name, got, ok, want)
		}
	}
	if v, _ := metricValue(set, `observer_transport_rebalances_total`); v < 1 {
		t.Fatalf("unexpected observer_transport_rebalances_total; got %v; want at least 1", v)
	}

	close(gate.open)
	waitDrained(t, c, o, len(evs), 2*time.Minute)
	waitFor(t, time.Minute, "every partition's backlog read as empty", func() bool {
		for p := 0; p < cfg.Partitions; p++ {
			pending, ack := backlogNames(p)
			if !metricIs(set, pending, 0) || !metricIs(set, ack, 0) {
				return false
			}
		}
		return true
	})

	stop()
	if got, _ := metricValue(set, `observer_transport_partitions_released_total`); got != float64(cfg.Partitions) {
		t.Fatalf("unexpected observer_transport_partitions_released_total after leaving; got %v; want %d", got, cfg.Partitions)
	}
	if !metricIs(set, `observer_transport_owned_partitions`, 0) {
		t.Fatal("unexpected observer_transport_owned_partitions after leaving; want 0")
	}
	pending, _ := backlogNames(0)
	if _, ok := metricValue(set, pending); ok {
		t.Fatalf("unexpected %s after leaving; want no series", pending)
	}
}
