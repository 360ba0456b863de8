package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/fraiseql/fraiseql-observers/configs"
	"github.com/fraiseql/fraiseql-observers/internal/promtext"
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
	samples := promtext.Parse(text)
	var kept []promtext.Sample
	for _, s := range samples {
		if strings.HasPrefix(s.Name, prefix) {
			kept = append(kept, s)
		}
	}
	qs := promtext.HistogramQuantiles(kept, []float64{0.5, 0.9, 0.99})
	if asJSON {
		if kept == nil {
			kept = []promtext.Sample{}
		}
		if qs == nil {
			qs = []promtext.Quantile{}
		}
		return g.printJSON(map[string]any{"samples": kept, "quantiles": qs})
	}
	for _, s := range kept {
		fmt.Fprintf(g.stdout, "%s %s\n", termText(s.Series), formatValue(s.Value))
	}
	if len(qs) > 0 {
		fmt.Fprintln(g.stdout, "# estimated from the histogram buckets since the service started, as histogram_quantile does")
		for _, q := range qs {
			fmt.Fprintf(g.stdout, "%s_p%s%s %s\n", termText(q.Name), strconv.FormatFloat(q.Quantile*100, 'f', -1, 64), termText(promtext.FormatLabels(q.Labels)),
				strconv.FormatFloat(q.Value, 'g', 6, 64))
		}
	}
	if len(kept) == 0 && prefix != "" {
		return fmt.Errorf("no metric whose name starts with %q", prefix)
	}
	return nil
}

func formatValue(v float64) string { return strconv.FormatFloat(v, 'g', -1, 64) }
