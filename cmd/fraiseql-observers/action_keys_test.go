package main

import (
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/VictoriaMetrics/metrics"
	"github.com/rs/zerolog"

	"github.com/fraiseql/fraiseql-observers/configs"
	"github.com/fraiseql/fraiseql-observers/pipeline"
)

// actionConfig is c.yaml with one observer whose only action is the mapping given
// (one key per line, unindented).
func actionConfig(action string) string {
	var b strings.Builder
	b.WriteString("source:\n  dsn: postgres://app@db/app\nentities:\n  Order: public.orders\nobservers:\n  orders:\n    entity: Order\n    actions:\n")
	for i, line := range strings.Split(strings.TrimRight(action, "\n"), "\n") {
		if i == 0 {
			b.WriteString("      - " + line + "\n")
		} else {
			b.WriteString("        " + line + "\n")
		}
	}
	return b.String()
}

// buildAction parses the configuration and runs the action's builder; validateOnly
// as validate-config does.
func buildAction(t *testing.T, action string, env map[string]string, validateOnly bool) (pipeline.Sink, error) {
	t.Helper()
	return buildSource(t, "c.yaml", actionConfig(action), env, validateOnly)
}

// buildSource parses a whole configuration (named name) and runs the builder of the
// first observer's first action. A sink it builds is closed when the test ends.
func buildSource(t *testing.T, name, src string, env map[string]string, validateOnly bool) (pipeline.Sink, error) {
	t.Helper()
	cfg, _, err := configs.Parse(name, []byte(src), func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if err != nil {
		return nil, err
	}
	a := cfg.Observers[0].Actions[0]
	b := &builder{cfg: cfg, log: zerolog.Nop(), set: metrics.NewSet(), validateOnly: validateOnly}
	if _, ok := actionTypes[a.Type]; !ok {
		t.Fatalf("unexpected: no action type registered for %q", a.Type)
	}
	sink, _, err := b.action(t.Context(), cfg.Observers[0], a)
	if c, ok := sink.(pipeline.Closer); ok && err == nil {
		t.Cleanup(func() { c.Close() })
	}
	return sink, err
}

// actionBatch builds action (validate-only) and returns the most events the
// pipeline hands one delivery of it (1: one event at a time, from parallel workers).
func actionBatch(t *testing.T, action string, env map[string]string) int {
	t.Helper()
	cfg, _, err := configs.Parse("c.yaml", []byte(actionConfig(action)), func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if err != nil {
		t.Fatal(err)
	}
	b := &builder{cfg: cfg, log: zerolog.Nop(), set: metrics.NewSet(), validateOnly: true}
	_, batch, err := b.action(t.Context(), cfg.Observers[0], cfg.Observers[0].Actions[0])
	if err != nil {
		t.Fatal(err)
	}
	return batch
}

// posOf returns "c.yaml:line:column" of the first occurrence of marker in the
// configuration built from action.
func posOf(t *testing.T, action, marker string) string {
	t.Helper()
	src := actionConfig(action)
	i := strings.Index(src, marker)
	if i < 0 {
		t.Fatalf("marker %q not in the configuration", marker)
	}
	line := 1 + strings.Count(src[:i], "\n")
	col := 1 + utf8.RuneCountInString(src[strings.LastIndexByte(src[:i], '\n')+1:i])
	return fmt.Sprintf("c.yaml:%d:%d", line, col)
}

// wantBuilt checks that action builds, for validate-config and for real, and closes
// the sink.
func wantBuilt(t *testing.T, action string, env map[string]string) pipeline.Sink {
	t.Helper()
	if s, err := buildAction(t, action, env, true); err != nil || s != nil {
		t.Fatalf("unexpected validate-only result; got %v, %v", s, err)
	}
	s, err := buildAction(t, action, env, false)
	if err != nil || s == nil {
		t.Fatalf("unexpected build result; got %v, %v", s, err)
	}
	t.Cleanup(func() {
		if c, ok := s.(pipeline.Closer); ok {
			c.Close()
		}
	})
	return s
}

// wantError checks that action fails to load with an error at the position of marker
// holding msg.
func wantError(t *testing.T, action string, env map[string]string, marker, msg string) {
	t.Helper()
	_, err := buildAction(t, action, env, true)
	if err == nil {
		t.Fatalf("unexpected success for:\n%s", action)
	}
	want := posOf(t, action, marker) + ": "
	if !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), msg) {
		t.Fatalf("unexpected error for:\n%s\ngot:  %v\nwant: %s... %s", action, err, want, msg)
	}
}

// TestActionDeliverySettings: an action's ordered and max_concurrency override
// concurrent_execution for that action only; concurrent_execution.enabled: false
// orders every action.
func TestActionDeliverySettings(t *testing.T) {
	dir := t.TempDir()
	base := "source:\n  dsn: postgres://app@db/app\n%sobservers:\n  o:\n    entity: public.orders\n    actions:\n" +
		"      - {type: file, name: plain, path: " + dir + "/a}\n" +
		"      - {type: file, name: ordered, path: " + dir + "/b, ordered: true}\n" +
		"      - {type: file, name: narrow, path: " + dir + "/c, max_concurrency: 2}\n"
	for _, c := range []struct {
		section string
		want    []string // per action: ordered/concurrency
	}{
		{"", []string{"false/10", "true/1", "false/2"}},
		{"concurrent_execution: {max_concurrency: 4}\n", []string{"false/4", "true/1", "false/2"}},
		{"concurrent_execution: {enabled: false}\n", []string{"true/1", "true/1", "true/1"}},
	} {
		cfg, _, err := configs.Parse("c.yaml", []byte(fmt.Sprintf(base, c.section)), func(string) (string, bool) { return "", false })
		if err != nil {
			t.Fatal(err)
		}
		b := &builder{cfg: cfg, log: zerolog.Nop(), set: metrics.NewSet()}
		obs, err := b.observers(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, a := range obs[0].Actions {
			if c, ok := a.Sink.(pipeline.Closer); ok {
				t.Cleanup(func() { c.Close() })
			}
			conc := a.Concurrency
			if a.Ordered {
				conc = 1 // the pipeline runs an ordered action with one worker
			}
			got = append(got, fmt.Sprintf("%v/%d", a.Ordered, conc))
		}
		if fmt.Sprint(got) != fmt.Sprint(c.want) {
			t.Fatalf("%q: unexpected delivery settings; got %v; want %v", c.section, got, c.want)
		}
	}
}

// TestPoolSize: the service's pool has room for the widest database action that uses
// it, plus connections for the service's own tables.
func TestPoolSize(t *testing.T) {
	f := func(actions string, want int32) {
		t.Helper()
		src := "source:\n  dsn: postgres://app@db/app\nobservers:\n  o:\n    entity: public.orders\n    actions:\n" + actions
		cfg, _, err := configs.Parse("c.yaml", []byte(src), func(string) (string, bool) { return "DSN", true })
		if err != nil {
			t.Fatal(err)
		}
		if got := poolSize(cfg); got != want {
			t.Fatalf("%s: unexpected pool size; got %d; want %d", actions, got, want)
		}
	}
	f("      - {type: log}\n", 10)
	f("      - {type: database, function_name: f}\n", 16)
	f("      - {type: database, function_name: f, max_concurrency: 30}\n", 36)
	f("      - {type: database, function_name: f, max_concurrency: 30, dsn_env: OTHER}\n", 10)
}
