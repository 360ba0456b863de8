package promtext

import (
	"reflect"
	"testing"
)

const exposition = `# HELP observer_events_total events
# TYPE observer_events_total counter
observer_events_total{action="out",observer="all"} 42
observer_up 1
bad line
observer_label_escape{v="a \"b\", c"} 2.5
observer_lat_bucket{action="out",le="0.1"} 10
observer_lat_bucket{action="out",le="1"} 30
observer_lat_bucket{action="out",le="+Inf"} 40
observer_lat_sum{action="out"} 12
observer_lat_count{action="out"} 40
observer_empty_bucket{le="1"} 0
observer_empty_bucket{le="+Inf"} 0
`

func TestParse(t *testing.T) {
	got := Parse(exposition)
	if len(got) != 10 {
		t.Fatalf("%d samples, want 10: %+v", len(got), got)
	}
	want := Sample{Name: "observer_events_total", Labels: map[string]string{"action": "out", "observer": "all"}, Value: 42,
		Series: `observer_events_total{action="out",observer="all"}`}
	if !reflect.DeepEqual(got[0], want) {
		t.Fatalf("first sample %+v, want %+v", got[0], want)
	}
	if got[1].Name != "observer_up" || got[1].Labels != nil || got[1].Value != 1 {
		t.Fatalf("second sample %+v", got[1])
	}
	if v := got[2].Labels["v"]; v != `a "b", c` {
		t.Fatalf("escaped label read as %q", v)
	}
}

func TestHistogramQuantiles(t *testing.T) {
	qs := HistogramQuantiles(Parse(exposition), []float64{0.5, 0.9, 0.99})
	if len(qs) != 3 {
		t.Fatalf("%d quantiles, want 3 (the empty histogram left out): %+v", len(qs), qs)
	}
	// rank 20 of 40 lies in (0.1, 1] holding 20: 0.1 + 0.9*10/20.
	if q := qs[0]; q.Name != "observer_lat" || q.Labels["action"] != "out" || q.Value != 0.55 || q.Count != 40 {
		t.Fatalf("p50 %+v, want 0.55 of observer_lat{action=out}", q)
	}
	// ranks 36 and 39.6 fall in the +Inf bucket: the highest finite bound.
	if qs[1].Value != 1 || qs[2].Value != 1 {
		t.Fatalf("p90 %v, p99 %v, want 1 and 1", qs[1].Value, qs[2].Value)
	}
}

func TestFormatLabels(t *testing.T) {
	if got := FormatLabels(map[string]string{"b": "y", "a": `x"`}); got != `{a="x\"",b="y"}` {
		t.Fatalf("got %s", got)
	}
	if got := FormatLabels(nil); got != "" {
		t.Fatalf("got %q for no labels", got)
	}
}
