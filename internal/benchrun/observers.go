package main

import (
	"context"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/fraiseql/fraiseql-observers/internal/pgtest"
	"github.com/fraiseql/fraiseql-observers/internal/promtext"
)

// observers measures rows events matched against 10 observers (each event matches
// exactly one, by `n % 10`) and delivered by webhook to a local receiver answering at
// once, then by file actions; it reports events/s and the match-to-delivery latency
// percentiles from the service's own histogram.
func observers(ctx context.Context, srv *pgtest.Server, bin string, rows int) error {
	fmt.Printf("## %d events through 10 observers\n\n", rows)
	fmt.Println("| actions | time | events/s | p50 match→delivery | p99 match→delivery | peak RSS |")
	fmt.Println("|---|---|---|---|---|---|")
	for _, kind := range []string{"webhook", "file"} {
		if err := observersRun(ctx, srv, bin, rows, kind); err != nil {
			return fmt.Errorf("%s: %w", kind, err)
		}
	}
	fmt.Println("\nCompare with the catch-up figure above (one observer, no condition) for the cost of matching.")
	fmt.Println()
	return nil
}

func observersRun(ctx context.Context, srv *pgtest.Server, bin string, rows int, kind string) error {
	db, err := backlog(ctx, srv, "bench_obs_"+kind, rows, 100, "obs_slot")
	if err != nil {
		return err
	}
	defer srv.DropDatabase(ctx, db)
	dir, err := os.MkdirTemp("", "benchrun")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	adminLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	adminAddr := adminLn.Addr().String()
	adminLn.Close()

	var received atomic.Int64
	var delivered func() (int, error)
	var actions []string
	switch kind {
	case "webhook":
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		hs := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.Copy(io.Discard, r.Body)
			received.Add(1)
		})}
		go hs.Serve(ln)
		defer hs.Close()
		for i := range 10 {
			actions = append(actions, fmt.Sprintf(`[{type: webhook, url: "http://%s/hook/%d", allow_private_networks: true}]`, ln.Addr(), i))
		}
		delivered = func() (int, error) { return int(received.Load()), nil }
	case "file":
		counter := &lineCounter{}
		for i := range 10 {
			p := filepath.Join(dir, fmt.Sprintf("out%d.jsonl", i))
			counter.paths = append(counter.paths, p)
			actions = append(actions, fmt.Sprintf(`[{type: file, path: %q}]`, p))
		}
		delivered = counter.count
	}
	var obs strings.Builder
	for i, a := range actions {
		fmt.Fprintf(&obs, "  o%d:\n    entity: events\n    event_type: INSERT\n    condition: \"n %% 10 == %d\"\n    actions: %s\n", i, i, a)
	}
	cfg := fmt.Sprintf(`
source: {dsn: %q, slot: obs_slot, publication: pub, status_interval: 1s}
checkpoints: {interval: 1s}
admin: {listen: %q}
logging: {level: warn}
observers:
%s`, srv.DSN(db), adminAddr, obs.String())
	var p50, p99 float64
	res, err := runService(ctx, bin, dir, cfg, delivered, rows, func() {
		p50, p99, err = latency(adminAddr, kind)
	})
	if err != nil {
		return err
	}
	fmt.Printf("| %s (10 actions) | %.1f s | %.0f | %s | %s | %d MiB |\n", kind, res.dur.Seconds(), float64(rows)/res.dur.Seconds(),
		ms(p50), ms(p99), res.maxRSS/1024)
	return nil
}

func ms(s float64) string {
	if math.IsNaN(s) {
		return "n/a"
	}
	return fmt.Sprintf("%.1f ms", s*1000)
}

// latency scrapes /metrics and estimates the 50th and 99th percentile of
// observer_delivery_latency_seconds for the action type.
func latency(addr, actionType string) (p50, p99 float64, err error) {
	h, err := scrapeLatency(addr, actionType)
	return h.quantile(0.5), h.quantile(0.99), err
}

// histogram is the bucket samples of one Prometheus histogram, as scraped.
type histogram []promtext.Sample

// scrapeLatency reads the buckets of observer_delivery_latency_seconds for the action
// type from the admin API's /metrics.
func scrapeLatency(addr, actionType string) (histogram, error) {
	samples, err := scrape(addr)
	var h histogram
	for _, s := range samples {
		if s.Name == "observer_delivery_latency_seconds_bucket" && s.Labels["action_type"] == actionType {
			h = append(h, s)
		}
	}
	return h, err
}

// scrape reads the samples of the admin API's /metrics.
func scrape(addr string) ([]promtext.Sample, error) {
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return promtext.Parse(string(b)), err
}

// since returns what was counted after earlier (a scrape of the same histogram).
func (h histogram) since(earlier histogram) histogram {
	out := slices.Clone(h)
	for i, b := range out {
		for _, e := range earlier {
			if e.Series == b.Series {
				out[i].Value -= e.Value
			}
		}
	}
	return out
}

// quantile estimates the q-quantile as Prometheus's histogram_quantile does; NaN
// when nothing was counted.
func (h histogram) quantile(q float64) float64 {
	qs := promtext.HistogramQuantiles(h, []float64{q})
	if len(qs) == 0 {
		return math.NaN()
	}
	return qs[0].Value
}
