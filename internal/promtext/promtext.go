// Package promtext reads the Prometheus text exposition format that the admin
// endpoint's /metrics serves: its samples (comment lines are skipped), and quantile
// estimates of its histograms computed from their buckets as PromQL's
// histogram_quantile does. The metrics command prints them; tests read them.
package promtext

import (
	"math"
	"sort"
	"strconv"
	"strings"
)

// Sample is one sample line.
type Sample struct {
	Name   string            `json:"name"`
	Labels map[string]string `json:"labels,omitempty"`
	Value  float64           `json:"value"`
	// Series is name{labels} as written.
	Series string `json:"-"`
}

// Quantile is a histogram quantile estimated from cumulative buckets.
type Quantile struct {
	Name     string            `json:"name"`
	Labels   map[string]string `json:"labels,omitempty"`
	Quantile float64           `json:"quantile"`
	Value    float64           `json:"value"`
	Count    float64           `json:"count"`
}

// Parse returns the samples of text; comment lines and lines it cannot read are
// skipped.
func Parse(text string) []Sample {
	var out []Sample
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
		s := Sample{Series: line[:i], Value: v}
		s.Name, s.Labels = SplitSeries(s.Series)
		out = append(out, s)
	}
	return out
}

// SplitSeries splits `name{a="x",b="y"}` into the name and its labels (nil without
// braces).
func SplitSeries(series string) (string, map[string]string) {
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

// FormatLabels writes labels as {a="x",b="y"}, sorted by name; "" when there are none.
func FormatLabels(l map[string]string) string {
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

// HistogramQuantiles estimates the quantiles qs of every histogram among samples
// (series name_bucket with an le label), interpolating linearly inside the bucket
// that holds the rank, as PromQL's histogram_quantile does. Histograms without
// observations or without a +Inf bucket are left out.
func HistogramQuantiles(samples []Sample, qs []float64) []Quantile {
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
		key := base + FormatLabels(labels)
		h := byKey[key]
		if h == nil {
			h = &hist{name: base, labels: labels}
			byKey[key] = h
			order = append(order, key)
		}
		h.buckets = append(h.buckets, bucket{bound, s.Value})
	}
	var out []Quantile
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
			out = append(out, Quantile{Name: h.name, Labels: h.labels, Quantile: q, Value: v, Count: total})
		}
	}
	return out
}
