package configs

import (
	"encoding/json"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// promtool returns the path of promtool; it skips the test when it is missing, except
// under CI=true, where a missing tool is a failure (Debian's prometheus package ships
// it).
func promtool(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("promtool is not installed (apt-get install prometheus): %v", err)
		}
		t.Skip("promtool is not installed (apt-get install prometheus)")
	}
	return path
}

// TestPrometheusRules checks the shipped alert rules with promtool and runs their unit
// tests (prometheus/alerts_test.yaml).
func TestPrometheusRules(t *testing.T) {
	tool := promtool(t)
	for _, args := range [][]string{{"check", "rules", "alerts.yaml"}, {"test", "rules", "alerts_test.yaml"}} {
		cmd := exec.Command(tool, args...)
		cmd.Dir = "prometheus"
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "SUCCESS") {
			t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

// TestGrafanaDashboard checks that the dashboard is valid JSON and that every panel
// queries something (a row only groups the panels below it and queries nothing).
func TestGrafanaDashboard(t *testing.T) {
	data, err := os.ReadFile("grafana/dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Title  string `json:"title"`
		Panels []struct {
			Title   string `json:"title"`
			Type    string `json:"type"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(data, &d); err != nil {
		t.Fatalf("dashboard.json is not valid JSON: %v", err)
	}
	if d.Title == "" || len(d.Panels) < 10 {
		t.Fatalf("unexpected dashboard: title %q, %d panels", d.Title, len(d.Panels))
	}
	for _, p := range d.Panels {
		if p.Type == "row" {
			if len(p.Targets) != 0 {
				t.Fatalf("row %q has queries; a row only groups panels", p.Title)
			}
			continue
		}
		if len(p.Targets) == 0 {
			t.Fatalf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			if !strings.Contains(tg.Expr, "observer_") {
				t.Fatalf("panel %q queries %q, not a service metric", p.Title, tg.Expr)
			}
		}
	}
}
