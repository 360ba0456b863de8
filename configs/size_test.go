package configs

import (
	"strings"
	"testing"
	"time"
)

func TestParseSize(t *testing.T) {
	f := func(in string, want Size) {
		t.Helper()
		got, err := parseSize(in)
		if err != nil || got != want {
			t.Fatalf("unexpected size for %q; got %d, %v; want %d", in, got, err, want)
		}
	}
	f("0", 0)
	f("512", 512)
	f("512B", 512)
	f("512kB", 512_000)
	f("512KB", 512_000)
	f("64MiB", 64<<20)
	f("64mib", 64<<20)
	f("1GB", 1_000_000_000)
	f("1.5GiB", 3<<29)
	f("2 TiB", 2<<40)
	bad := func(in, frag string) {
		t.Helper()
		if _, err := parseSize(in); err == nil || !strings.Contains(err.Error(), frag) {
			t.Fatalf("unexpected error for %q; got %v; want one containing %q", in, err, frag)
		}
	}
	bad("", "expected a size")
	bad("MiB", "expected a size")
	bad("-1MiB", "must not be negative")
	bad("10m", "unknown size unit")
	bad("1..2MB", "expected a size")
	bad("99999999TiB", "too large")
}

func TestSizeString(t *testing.T) {
	for s, want := range map[Size]string{0: "0B", 1000: "1000B", 1024: "1KiB", 64 << 20: "64MiB", 3 << 30: "3GiB", 2 << 40: "2TiB"} {
		if got := s.String(); got != want {
			t.Errorf("unexpected string for %d; got %q; want %q", int64(s), got, want)
		}
	}
}

func TestReplayWindow(t *testing.T) {
	f := func(in string, want ReplayWindow) {
		t.Helper()
		got, err := parseReplayWindow(in)
		if err != nil || got != want {
			t.Fatalf("unexpected window for %q; got %+v, %v; want %+v", in, got, err, want)
		}
	}
	f("1h", ReplayWindow{Duration: time.Hour})
	f("10m", ReplayWindow{Duration: 10 * time.Minute})
	f("256MiB", ReplayWindow{Bytes: 256 << 20})
	f("0", ReplayWindow{})
	if _, err := parseReplayWindow("-1h"); err == nil {
		t.Fatalf("unexpected success for a negative window")
	}
	cfg, _ := mustParse(t, src+"replay_window: 1073741824\n", nil)
	if cfg.ReplayWindow != (ReplayWindow{Bytes: 1 << 30}) || cfg.ReplayWindow.String() != "1GiB" {
		t.Fatalf("unexpected window from an integer; got %+v", cfg.ReplayWindow)
	}
	cfg, _ = mustParse(t, src+"replay_window: 0\n", nil)
	if !cfg.ReplayWindow.IsZero() || cfg.ReplayWindow.String() != "0" {
		t.Fatalf("unexpected window for 0; got %+v", cfg.ReplayWindow)
	}
}

func TestParseDuration(t *testing.T) {
	if d, err := parseDuration("1h30m"); err != nil || d != 90*time.Minute {
		t.Fatalf("unexpected duration; got %v, %v", d, err)
	}
	if _, err := parseDuration("30"); err == nil || !strings.Contains(err.Error(), "needs a unit") {
		t.Fatalf("unexpected error for a bare number; got %v", err)
	}
	cfg, _ := mustParse(t, src+"  heartbeat_interval: 0\n", nil)
	if cfg.Source.HeartbeatInterval != 0 {
		t.Fatalf("unexpected heartbeat for 0; got %v", cfg.Source.HeartbeatInterval)
	}
}
