package logaction

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/rs/zerolog"
	"go.uber.org/goleak"

	"github.com/fraiseql/fraiseql-observers/decoder"
	"github.com/fraiseql/fraiseql-observers/eval"
	"github.com/fraiseql/fraiseql-observers/internal/sinktest"
	"github.com/fraiseql/fraiseql-observers/pipeline"
	"github.com/fraiseql/fraiseql-observers/sinks"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// logLines parses the JSON log lines written to buf.
func logLines(t *testing.T, buf *sinktest.LockedBuffer) []map[string]any {
	t.Helper()
	var out []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(buf.Bytes()))
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("unexpected log line %q: %v", sc.Text(), err)
		}
		out = append(out, m)
	}
	return out
}

// TestDefaultLine: one line per event with event_id, table, op and the message
// "event"; no row value.
func TestDefaultLine(t *testing.T) {
	var buf sinktest.LockedBuffer
	s, err := New(t.Context(), Config{}, sinks.Deps{Logger: zerolog.New(&buf).With().Str("action", "o.log").Logger()})
	if err != nil {
		t.Fatal(err)
	}
	evs := sinktest.Events(20, 5)
	dlq := sinktest.Run(t, s, evs, sinktest.RunOptions{})
	if len(dlq.Snapshot()) != 0 {
		t.Fatal("unexpected dead letters")
	}
	lines := logLines(t, &buf)
	if len(lines) != len(evs) {
		t.Fatalf("unexpected line count; got %d; want %d", len(lines), len(evs))
	}
	seen := map[string]bool{}
	for _, l := range lines {
		if l["level"] != "info" || l["message"] != "event" || l["table"] != "public.orders" || l["op"] != "INSERT" || l["action"] != "o.log" || len(l) != 6 {
			t.Fatalf("unexpected line: %v", l)
		}
		seen[l["event_id"].(string)] = true
	}
	for _, ev := range evs {
		if !seen[ev.ID.String()] {
			t.Fatalf("unexpected: no line for %s", ev.ID)
		}
	}
	if strings.Contains(buf.String(), "pending") || strings.Contains(buf.String(), "12.50") {
		t.Fatalf("unexpected row value in the log:\n%s", buf.String())
	}
}

func TestLevelsAndTemplate(t *testing.T) {
	ev := sinktest.Events(1, 1)[0]
	f := func(level string, loggerLevel zerolog.Level, tmpl, wantMsg string) {
		t.Helper()
		var buf sinktest.LockedBuffer
		s, err := New(t.Context(), Config{Level: level, MessageTemplate: tmpl},
			sinks.Deps{Logger: zerolog.New(&buf).Level(loggerLevel), Templates: sinks.Templates{Meta: eval.Meta{Entity: "Order"}}})
		if err != nil {
			t.Fatal(err)
		}
		built := logLines(t, &buf) // New warns about a level below the logger's
		if below := wantMsg == ""; len(built) != 0 != below || below && !strings.Contains(fmt.Sprint(built[0]["message"]), "below the logging level") {
			t.Fatalf("unexpected lines from New; got %v; want one warning only for a level below the logger's", built)
		}
		if err := s.Deliver(t.Context(), ev); err != nil {
			t.Fatal(err)
		}
		lines := logLines(t, &buf)[len(built):]
		if wantMsg == "" {
			if len(lines) != 0 {
				t.Fatalf("unexpected line below the logger's level: %v", lines)
			}
			return
		}
		if len(lines) != 1 || lines[0]["level"] != level || lines[0]["message"] != wantMsg {
			t.Fatalf("unexpected lines; got %v; want level %s message %q", lines, level, wantMsg)
		}
	}
	f("trace", zerolog.TraceLevel, "", "event")
	f("debug", zerolog.TraceLevel, "static text", "static text")
	f("warn", zerolog.InfoLevel, "{{ entity }} {{ new.id }} is {{ new.status }} ({{ event.op }})", "Order 0 is pending (INSERT)")
	f("error", zerolog.InfoLevel, "total {{ total }}", "total 0.50")
	f("debug", zerolog.InfoLevel, "x", "")
	f("trace", zerolog.DebugLevel, "x", "")

	// A template that fails for the event is a permanent failure.
	s, _ := New(t.Context(), Config{MessageTemplate: "{{ new.missing }}"}, sinks.Deps{Logger: zerolog.Nop()})
	bad := &decoder.Event{Op: decoder.OpInsert, New: ev.New}
	if err := s.Deliver(t.Context(), bad); sinks.Class(err) != "template" || pipeline.Retryable(err) {
		t.Fatalf("unexpected error; got %v", err)
	}
}

func TestValidate(t *testing.T) {
	var ke *sinks.KeyError
	c := Config{Level: "fatal"}
	if err := c.Validate(); !errors.As(err, &ke) || ke.Key != "level" {
		t.Fatalf("unexpected error for level fatal; got %v", err)
	}
	c = Config{MessageTemplate: "{{ new.x "}
	if err := c.Validate(); !errors.As(err, &ke) || ke.Key != "message_template" {
		t.Fatalf("unexpected error for a bad template; got %v", err)
	}
	c = Config{}
	c.Defaults()
	if err := c.Validate(); err != nil || c.Level != "info" || c.MessageTemplate != "event" {
		t.Fatalf("unexpected defaults: %+v, %v", c, err)
	}
}
