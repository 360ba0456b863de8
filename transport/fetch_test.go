package transport

import (
	"strings"
	"testing"
	"time"

	"github.com/fraiseql/fraiseql-observers/internal/sinktest"
)

// Messages JetStream delivered to an executor but lost in transit (its connection
// dropped, say with the NATS node it was connected to) count as delivered: the
// consumer hands the next ones to the executor's next pull and delivers the lost
// ones again only after ack_wait, behind them. The executor must notice the gap
// and read the partition again from its first unacknowledged message, so each
// row's order holds.
func TestExecutorKeepsOrderWhenDeliveriesAreLost(t *testing.T) {
	_, url := startNATS(t)
	cfg := testConfig(url)
	c, st := connect(t, cfg)
	r, _ := startPublisher(t, c)
	link := startProxy(t, strings.TrimPrefix(url, "nats://"))
	ecfg := cfg
	ecfg.Connection.URL = testConfig(link.url()).Connection.URL
	o := &oracle{}
	runExecutor(t, ecfg, "e1", o)
	waitFor(t, time.Minute, "the executor owning every partition", func() bool { return ownsAll(t, c, "e1") })
	evs := sinktest.Events(3000, 60)
	r.push(t, evs[:1000])
	waitDrained(t, c, o, 1000, time.Minute)

	// What the server sends now is lost; the executor's pulls still reach it.
	link.dropping.Store(true)
	r.push(t, evs[1000:1500])
	waitFor(t, time.Minute, "the server to deliver the next events into the void", func() bool {
		ctx := sinktest.Context(t)
		pending, ackPending := 0, 0
		l := st.ListConsumers(ctx)
		for info := range l.Info() {
			pending += int(info.NumPending)
			ackPending += info.NumAckPending
		}
		return l.Err() == nil && pending == 0 && ackPending == 500
	})
	link.cut()
	link.dropping.Store(false)
	r.push(t, evs[1500:])
	waitDrained(t, c, o, len(evs), 2*time.Minute)
	t.Logf("repeats: %d", o.check(t, evs))
}
