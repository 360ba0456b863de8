package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/fraiseql/fraiseql-observers/internal/pgtest"
)

// idle runs the service with defaults on a table nobody writes to for d and reports the
// CPU it used and its resident memory after the first 10 s and at the end (the goal:
// under 1 % of a core, no growth).
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
	cfg := fmt.Sprintf(`
source: {dsn: %q, slot: obs_slot, publication: pub}
admin: {listen: ""}
logging: {level: warn}
observers:
  all:
    entity: events
    event_type: INSERT
    actions: [{type: file, path: %q}]
`, srv.DSN(db), filepath.Join(dir, "events.jsonl"))
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
	cpu0, rss0, err := procStat(cmd.Process.Pid)
	if err != nil {
		return fmt.Errorf("%w\n%s", err, log.String())
	}
	time.Sleep(d)
	cpu1, rss1, err := procStat(cmd.Process.Pid)
	if err != nil {
		return fmt.Errorf("%w\n%s", err, log.String())
	}
	fmt.Printf("## Idle: no writes for %s (after %s of warm-up)\n\n", d, warm)
	fmt.Println("| CPU used | share of one core | RSS at start of the window | RSS at its end |")
	fmt.Println("|---:|---:|---:|---:|")
	fmt.Printf("| %s | %.2f %% | %.1f MiB | %.1f MiB |\n\n", cpu1-cpu0, 100*(cpu1-cpu0).Seconds()/d.Seconds(),
		float64(rss0)/1024, float64(rss1)/1024)
	return nil
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
