package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/fraiseql/fraiseql-observers/internal/pgtest"
)

// idle runs the service with defaults on a table nobody writes to for d and reports the
// CPU it used and, sampled six times over d after 10 s of warm-up, its resident memory
// and the Go heap it holds (from the admin API's /metrics), so that a growth and whether
// it levels off can both be seen (the goal: under 1 % of a core, no growth).
func idle(ctx context.Context, srv *pgtest.Server, bin string, d time.Duration) error {
	db, err := backlog(ctx, srv, "bench_idle", 0, 1, "obs_slot")
	if err != nil {
		return err
	}
	defer srv.DropDatabase(ctx, db)
	dir, err := os.MkdirTemp("", "benchrun")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	admin := ln.Addr().String()
	ln.Close()
	cfg := fmt.Sprintf(`
source: {dsn: %q, slot: obs_slot, publication: pub}
admin: {listen: %q}
logging: {level: warn}
observers:
  all:
    entity: events
    event_type: INSERT
    actions: [{type: file, path: %q}]
`, srv.DSN(db), admin, filepath.Join(dir, "events.jsonl"))
	path := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		return err
	}
	cmd := exec.Command(bin, "start", "--config", path)
	var log bytes.Buffer
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		return err
	}
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	}()
	warm := 10 * time.Second
	time.Sleep(warm)
	const samples = 6
	type sample struct {
		at       time.Duration
		cpu      time.Duration
		rss      int64 // KiB
		heap, gs float64
	}
	var ss []sample
	for i := 0; i <= samples; i++ {
		if i > 0 {
			time.Sleep(d / samples)
		}
		cpu, rss, err := procStat(cmd.Process.Pid)
		if err != nil {
			return fmt.Errorf("%w\n%s", err, log.String())
		}
		m, err := scrapeGauges(admin, "go_memstats_heap_inuse_bytes", "go_goroutines")
		if err != nil {
			return fmt.Errorf("%w\n%s", err, log.String())
		}
		ss = append(ss, sample{d * time.Duration(i) / samples, cpu, rss, m["go_memstats_heap_inuse_bytes"], m["go_goroutines"]})
	}
	first, last := ss[0], ss[len(ss)-1]
	fmt.Printf("## Idle: no writes for %s (after %s of warm-up)\n\n", d, warm)
	fmt.Println("| CPU used | share of one core | RSS at start of the window | RSS at its end |")
	fmt.Println("|---:|---:|---:|---:|")
	fmt.Printf("| %s | %.2f %% | %.1f MiB | %.1f MiB |\n\n", last.cpu-first.cpu, 100*(last.cpu-first.cpu).Seconds()/d.Seconds(),
		float64(first.rss)/1024, float64(last.rss)/1024)
	fmt.Println("| time into the window | RSS | Go heap in use | goroutines | CPU since the previous sample |")
	fmt.Println("|---:|---:|---:|---:|---:|")
	for i, x := range ss {
		var cpu time.Duration
		if i > 0 {
			cpu = x.cpu - ss[i-1].cpu
		}
		fmt.Printf("| %s | %.1f MiB | %.1f MiB | %.0f | %s |\n", x.at, float64(x.rss)/1024, x.heap/(1<<20), x.gs, cpu)
	}
	fmt.Println()
	return nil
}

// scrapeGauges reads the named unlabelled gauges from the admin API's /metrics.
func scrapeGauges(addr string, names ...string) (map[string]float64, error) {
	samples, err := scrape(addr)
	if err != nil {
		return nil, err
	}
	out := map[string]float64{}
	for _, s := range samples {
		if slices.Contains(names, s.Name) {
			out[s.Name] = s.Value
		}
	}
	for _, n := range names {
		if _, ok := out[n]; !ok {
			return nil, fmt.Errorf("%s: no %s", addr, n)
		}
	}
	return out, nil
}

// procStat returns the user + system CPU time and the resident set (KiB) of a process.
func procStat(pid int) (time.Duration, int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, err
	}
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+2:]))
	if len(f) < 13 {
		return 0, 0, fmt.Errorf("unexpected /proc/%d/stat", pid)
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64) // utime: field 14 of stat, in clock ticks (100/s)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	s, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	var rss int64
	for _, l := range strings.Split(string(s), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			rss, _ = strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		}
	}
	return time.Duration(ut+st) * 10 * time.Millisecond, rss, nil
}
