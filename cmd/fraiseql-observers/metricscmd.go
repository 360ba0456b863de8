package main

import (
	"context"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/fraiseql/fraiseql-observers/configs"
)

func newMetricsCmd(g *globals) *cobra.Command {
	var metric string
	c := &cobra.Command{
		Use:   "metrics [--metric NAME]",
		Short: "Print the running service's metrics",
		Long: `Fetch /metrics from the running service's admin endpoint and print every metricSample in
Prometheus text format (without the # comment lines), followed by p50/p90/p99 estimates for
each histogram (name_p99{labels}), computed from its buckets as histogram_quantile does.
--metric keeps the series whose name starts with NAME. Needs the running service (exit
code 6 otherwise).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runMetrics(cmd.Context(), g, metric) },
	}
	c.Flags().StringVarP(&metric, "metric", "m", "", "only series whose name starts with NAME")
	return c
}

// metricSample is one line of the Prometheus text format.
type metricSample struct {
	Name   string            `json:"name"`
	Labels map[string]string `json:"labels,omitempty"`
	Value  float64           `json:"value"`
	series string            // name{labels} as written
}

// quantile is a histogram quantile estimated from cumulative buckets.
type quantile struct {
	Name     string            `json:"name"`
	Labels   map[string]string `json:"labels,omitempty"`
	Quantile float64           `json:"quantile"`
	Value    float64           `json:"value"`
	Count    float64           `json:"count"`
}

// adminFromConfig loads the configuration unless --admin-url makes it unnecessary.
func (g *globals) adminFromConfig() (*adminClient, error) {
	if g.adminURL != "" {
		cfg, _, err := configs.LoadWith(g.config, configs.Options{DeferEnv: true})
		if err != nil {
			cfg = nil
		}
		return g.newAdminClient(cfg)
	}
	cfg, err := g.loadConfig()
	if err != nil {
		return nil, err
	}
	return g.newAdminClient(cfg)
}

func runMetrics(ctx context.Context, g *globals, prefix string) error {
	asJSON, err := g.json()
	if err != nil {
		return err
	}
	client, err := g.adminFromConfig()
	if err != nil {
		return err
	}
	var text string
	if err := client.do(ctx, "GET", "/metrics", nil, &text); err != nil {
		return serviceErr(err)
	}
	samples := parseMetrics(text)
	var kept []metricSample
	for _, s := range samples {
		if strings.HasPrefix(s.Name, prefix) {
			kept = append(kept, s)
		}
	}
	qs := histogramQuantiles(kept, []float64{0.5, 0.9, 0.99})
	if asJSON {
		if kept == nil {
			kept = []metricSample{}
		}
		if qs == nil {
			qs = []quantile{}
		}
		return g.printJSON(map[string]any{"samples": kept, "quantiles": qs})
	}
	for _, s := range kept {
		fmt.Fprintf(g.stdout, "%s %s\n", termText(s.series), formatValue(s.Value))
	}
	if len(qs) > 0 {
		fmt.Fprintln(g.stdout, "# estimated from the histogram buckets since the service started, as histogram_quantile does")
		for _, q := range qs {
			fmt.Fprintf(g.stdout, "%s_p%s%s %s\n", termText(q.Name), strconv.FormatFloat(q.Quantile*100, 'f', -1, 64), termText(formatLabels(q.Labels)),
				strconv.FormatFloat(q.Value, 'g', 6, 64))
		}
	}
	if len(kept) == 0 && prefix != "" {
		return fmt.Errorf("no metric whose name starts with %q", prefix)
	}
	return nil
}

func formatValue(v float64) string { return strconv.FormatFloat(v, 'g', -1, 64) }

func formatLabels(l map[string]string) string {
	if len(l) == 0 {
		return ""
	}
	keys := make([]string, 0, len(l))
	for k := range l {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + strconv.Quote(l[k])
	}
	return "{" + strings.Join(parts, ",") + "}"
}

// parseMetrics parses the Prometheus text format (samples only).
func parseMetrics(text string) []metricSample {
	var out []metricSample
	for _, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		s := metricSample{series: line[:i], Value: v}
		s.Name, s.Labels = splitSeries(s.series)
		out = append(out, s)
	}
	return out
}

// splitSeries splits `name{a="x",b="y"}` into the name and its labels.
func splitSeries(series string) (string, map[string]string) {
	open := strings.IndexByte(series, '{')
	if open < 0 {
		return series, nil
	}
	name, rest := series[:open], strings.TrimSuffix(series[open+1:], "}")
	labels := map[string]string{}
	for rest != "" {
		eq := strings.IndexByte(rest, '=')
		if eq < 0 {
			break
		}
		key := strings.TrimSpace(rest[:eq])
		rest = rest[eq+1:]
		val, tail, ok := cutQuoted(rest)
		if !ok {
			break
		}
		labels[key] = val
		rest = strings.TrimPrefix(strings.TrimSpace(tail), ",")
	}
	return name, labels
}

// cutQuoted reads a Go-style quoted string at the start of s.
func cutQuoted(s string) (val, rest string, ok bool) {
	if s == "" || s[0] != '"' {
		return "", s, false
	}
	for i := 1; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case '"':
			v, err := strconv.Unquote(s[:i+1])
			return v, s[i+1:], err == nil
		}
	}
	return "", s, false
}

// histogramQuantiles estimates quantiles of every histogram among samples (series
// name_bucket with an le label), interpolating linearly inside the bucket that holds
// the rank, as PromQL's histogram_quantile does.
func histogramQuantiles(samples []metricSample, qs []float64) []quantile {
	type bucket struct{ le, count float64 }
	type hist struct {
		name    string
		labels  map[string]string
		buckets []bucket
	}
	byKey := map[string]*hist{}
	var order []string
	for _, s := range samples {
		base, ok := strings.CutSuffix(s.Name, "_bucket")
		le, hasLE := s.Labels["le"]
		if !ok || !hasLE {
			continue
		}
		bound, err := strconv.ParseFloat(le, 64)
		if err != nil {
			continue
		}
		labels := map[string]string{}
		for k, v := range s.Labels {
			if k != "le" {
				labels[k] = v
			}
		}
		key := base + formatLabels(labels)
		h := byKey[key]
		if h == nil {
			h = &hist{name: base, labels: labels}
			byKey[key] = h
			order = append(order, key)
		}
		h.buckets = append(h.buckets, bucket{bound, s.Value})
	}
	var out []quantile
	for _, key := range order {
		h := byKey[key]
		sort.Slice(h.buckets, func(i, j int) bool { return h.buckets[i].le < h.buckets[j].le })
		total := h.buckets[len(h.buckets)-1].count
		if total == 0 || !math.IsInf(h.buckets[len(h.buckets)-1].le, 1) {
			continue
		}
		for _, q := range qs {
			rank := q * total
			lower, prev := 0.0, 0.0
			v := 0.0
			for i, b := range h.buckets {
				if b.count >= rank {
					switch {
					case math.IsInf(b.le, 1):
						if i > 0 {
							v = h.buckets[i-1].le // the highest finite bound, as PromQL does
						}
					case b.count == prev:
						v = b.le
					default:
						v = lower + (b.le-lower)*(rank-prev)/(b.count-prev)
					}
					break
				}
				lower, prev = b.le, b.count
			}
			out = append(out, quantile{Name: h.name, Labels: h.labels, Quantile: q, Value: v, Count: total})
		}
	}
	return out
}
