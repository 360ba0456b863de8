package transport

import (
	"strings"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/fraiseql/fraiseql-observers/configs"
	"github.com/fraiseql/fraiseql-observers/internal/sinktest"
)

// A link to NATS that stops answering for longer than a JetStream call's timeout
// but shorter than the lease (a network stall, a NATS leader election) costs the
// executor nothing: it keeps its partitions and its generation, and the renewal
// that timed out (stored once the link moved again) is taken up. Before, the
// timed-out renewal dropped every partition at once, the generation was replaced
// and the partitions stayed unclaimable until their keys expired.
//
// The stall is 5.25 s with a 9 s lease renewed every 3 s and calls timing out
// after 1.5 s: a renewal is sent within the stall's first 3 s and times out while
// it lasts, and the lease's key, renewed at most 3 s before the stall began, lives
// at least 6 s into it.
func TestLeasesSurviveAStalledLink(t *testing.T) {
	_, url := startNATS(t)
	cfg := testConfig(url)
	cfg.LeaseTTL = 9 * time.Second
	c, _ := connect(t, cfg)
	r, _ := startPublisher(t, c)
	link := startProxy(t, strings.TrimPrefix(url, "nats://"))
	ecfg := cfg
	ecfg.Connection.URL = configs.NewSecret(link.url())
	ecfg.Timeout = 500 * time.Millisecond
	set := metrics.NewSet()
	o := &oracle{}
	e, _ := runExecutorOpts(t, ecfg, "e1", o, ExecutorOptions{Metrics: set})
	evs := sinktest.Events(1000, 50)
	r.push(t, evs[:500])
	waitDrained(t, c, o, 500, time.Minute)
	rebalances := set.GetOrCreateCounter(`observer_transport_rebalances_total`)
	before := rebalances.Get()

	link.frozen.Store(true)
	time.Sleep(5250 * time.Millisecond)
	link.frozen.Store(false)

	r.push(t, evs[500:])
	waitDrained(t, c, o, len(evs), time.Minute)
	if got := rebalances.Get(); got != before {
		t.Fatalf("unexpected generations replaced by a stall shorter than the lease; got %d rebalances; want %d", got, before)
	}
	if got := e.Owned(); len(got) != cfg.Partitions {
		t.Fatalf("unexpected partitions owned after the stall; got %v; want all %d", got, cfg.Partitions)
	}
	if repeats := o.check(t, evs); repeats != 0 {
		t.Logf("repeats: %d", repeats)
	}
}
