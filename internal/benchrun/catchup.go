package main

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/fraiseql/fraiseql-observers/internal/pgtest"
)

// backlog creates a database with the benchmark table, a publication and the given
// slots (before any data, so they all see the backlog), then commits rows rows in
// transactions of perTx rows: a bigint key, ~100 bytes of text, an int, a timestamptz
// and ~200 bytes of jsonb.
func backlog(ctx context.Context, srv *pgtest.Server, name string, rows, perTx int, slots ...string) (string, error) {
	db, err := srv.CreateDatabase(ctx, name)
	if err != nil {
		return "", err
	}
	conn, err := srv.Connect(ctx, db)
	if err != nil {
		return "", err
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, `
CREATE TABLE events (id bigint PRIMARY KEY, body text NOT NULL, n int NOT NULL, at timestamptz NOT NULL, payload jsonb NOT NULL);
CREATE PUBLICATION pub FOR TABLE events;
CREATE PROCEDURE fill(total int, per int) LANGUAGE plpgsql AS $$
DECLARE i int := 0;
BEGIN
  WHILE i < total LOOP
    INSERT INTO events
    SELECT g, repeat(md5(g::text), 3), g % 1000, now(),
           jsonb_build_object('ref', md5(g::text), 'seq', g, 'note', repeat('x', 100), 'tags', jsonb_build_array('a', 'b', 'c'))
    FROM generate_series(i + 1, least(i + per, total)) g;
    COMMIT;
    i := i + per;
  END LOOP;
END $$;`)
	if err != nil {
		return "", fmt.Errorf("schema: %w", err)
	}
	for _, s := range slots {
		if _, err := conn.Exec(ctx, `SELECT pg_create_logical_replication_slot($1, 'pgoutput')`, s); err != nil {
			return "", fmt.Errorf("slot %s: %w", s, err)
		}
	}
	if _, err := conn.Exec(ctx, `CALL fill($1, $2)`, rows, perTx); err != nil {
		return "", fmt.Errorf("fill: %w", err)
	}
	return db, nil
}

func currentWAL(ctx context.Context, srv *pgtest.Server, db string) (string, error) {
	conn, err := srv.Connect(ctx, db)
	if err != nil {
		return "", err
	}
	defer conn.Close(ctx)
	var l string
	err = conn.QueryRow(ctx, `SELECT pg_current_wal_lsn()::text`).Scan(&l)
	return l, err
}

// result is one measured run.
type result struct {
	dur    time.Duration
	maxRSS int64         // KiB
	cpu    time.Duration // user + system CPU of the process
}

// measured reads the peak RSS and CPU time of a process that has exited.
func measured(cmd *exec.Cmd, dur time.Duration) result {
	r := result{dur: dur}
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		r.maxRSS = ru.Maxrss
		r.cpu = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	return r
}

// recvlogical consumes the slot with pg_recvlogical up to endpos, discarding the output.
func recvlogical(ctx context.Context, srv *pgtest.Server, db, slot, endpos string) (result, error) {
	bin, err := exec.LookPath("pg_recvlogical")
	if err != nil {
		bin = filepath.Join(srv.BinDir, "pg_recvlogical")
	}
	conninfo := fmt.Sprintf("host=127.0.0.1 port=%d user=postgres dbname=%s", srv.Port, db)
	cmd := exec.CommandContext(ctx, bin, "-d", conninfo, "--slot", slot, "--start", "--no-loop",
		"-o", "proto_version=1", "-o", "publication_names=pub", "-E", endpos, "-f", "/dev/null")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	if err := cmd.Run(); err != nil {
		return result{}, fmt.Errorf("pg_recvlogical: %w\n%s", err, out.String())
	}
	return measured(cmd, time.Since(start)), nil
}

// service runs the binary on the slot with one file action and returns when the file
// holds want lines. env is added to the service's environment.
func service(ctx context.Context, srv *pgtest.Server, bin, db, slot, extra string, want int, env ...string) (result, error) {
	dir, err := os.MkdirTemp("", "benchrun")
	if err != nil {
		return result{}, err
	}
	defer os.RemoveAll(dir)
	out := filepath.Join(dir, "events.jsonl")
	cfg := fmt.Sprintf(`
source: {dsn: %q, slot: %s, publication: pub, status_interval: 1s}
checkpoints: {interval: 1s}
admin: {listen: %q}
logging: {level: warn}
%s
observers:
  all:
    entity: events
    event_type: INSERT
    actions: [{type: file, path: %q}]
`, srv.DSN(db), slot, os.Getenv("BENCH_ADMIN"), extra, out)
	counter := &lineCounter{paths: []string{out}}
	return runService(ctx, bin, dir, cfg, func() (int, error) { return counter.count() }, want, nil, env...)
}

// runService writes cfg into dir, runs the binary on it (env added to its
// environment) and returns once delivered reports want; before stopping it calls
// atEnd (to scrape metrics, say).
func runService(ctx context.Context, bin, dir, cfg string, delivered func() (int, error), want int, atEnd func(), env ...string) (result, error) {
	path := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		return result{}, err
	}
	cmd := exec.Command(bin, "start", "--config", path)
	if len(env) > 0 {
		cmd.Env = append(os.Environ(), env...)
	}
	var log bytes.Buffer
	cmd.Stdout, cmd.Stderr = &log, &log
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return result{}, err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	n, err := waitDelivered(ctx, delivered, want, exited)
	dur := time.Since(start)
	if err == nil && atEnd != nil {
		atEnd()
	}
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(time.Minute):
		cmd.Process.Kill()
		<-exited
	}
	if err != nil {
		return result{}, fmt.Errorf("%w (%d of %d delivered)\n%s", err, n, want, log.String())
	}
	return measured(cmd, dur), nil
}

// waitDelivered polls delivered until it reports want.
func waitDelivered(ctx context.Context, delivered func() (int, error), want int, exited <-chan error) (int, error) {
	deadline := time.Now().Add(30 * time.Minute)
	n := 0
	for time.Now().Before(deadline) {
		var err error
		if n, err = delivered(); err != nil {
			return n, err
		}
		if n >= want {
			return n, nil
		}
		select {
		case err := <-exited:
			return n, fmt.Errorf("service exited: %w", err)
		case <-ctx.Done():
			return n, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	return n, fmt.Errorf("timed out")
}

// lineCounter counts the lines of files as they grow, reading only what was appended.
type lineCounter struct {
	paths []string
	files []*os.File
	lines int
	buf   []byte
}

func (c *lineCounter) count() (int, error) {
	if c.files == nil {
		c.files = make([]*os.File, len(c.paths))
		c.buf = make([]byte, 1<<20)
	}
	for i, p := range c.paths {
		if c.files[i] == nil {
			f, err := os.Open(p)
			if err != nil {
				continue // not created yet
			}
			c.files[i] = f
		}
		for {
			n, err := c.files[i].Read(c.buf)
			c.lines += bytes.Count(c.buf[:n], []byte{'\n'})
			if err == io.EOF || n == 0 {
				break
			}
			if err != nil {
				return c.lines, err
			}
		}
	}
	return c.lines, nil
}

// catchUp measures one backlog consumed by pg_recvlogical, the plain reader and the
// service, each from its own slot created before the data, in rounds: each round runs
// the three once more, each time in another order (recv, plain, service; then plain,
// service, recv; ...), so that whatever favours a place in the order (pages cached by
// the consumer before, a neighbour's burst) does not favour one consumer. Each
// consumer's median round is shown, with every round's ratios. It returns the service's
// highest peak RSS (KiB).
//
// BENCH_CATCHUP_VARIANT (environment variables separated by spaces, e.g.
// "GOMAXPROCS=1" or "GOGC=400") adds a fourth consumer to every round: the service
// with those variables set, for trying a lever against the defaults in the same run.
func catchUp(ctx context.Context, srv *pgtest.Server, bin string, rows, perTx, rounds int) (int64, error) {
	variant := strings.Fields(os.Getenv("BENCH_CATCHUP_VARIANT"))
	rounds = max(rounds, 1)
	name := fmt.Sprintf("bench_tx%d", perTx)
	var slots []string
	for r := range rounds {
		slots = append(slots, fmt.Sprintf("obs_slot_%d", r), fmt.Sprintf("recv_slot_%d", r), fmt.Sprintf("plain_slot_%d", r))
		if len(variant) > 0 {
			slots = append(slots, fmt.Sprintf("var_slot_%d", r))
		}
	}
	db, err := backlog(ctx, srv, name, rows, perTx, slots...)
	if err != nil {
		return 0, err
	}
	defer srv.DropDatabase(ctx, db)
	endpos, err := currentWAL(ctx, srv, db)
	if err != nil {
		return 0, err
	}
	var recvs, plains, ours, vars []result
	for r := range rounds {
		runs := []func() error{
			func() error {
				res, err := recvlogical(ctx, srv, db, fmt.Sprintf("recv_slot_%d", r), endpos)
				recvs = append(recvs, res)
				return err
			},
			func() error {
				res, err := plainReader(ctx, srv, db, fmt.Sprintf("plain_slot_%d", r), endpos)
				plains = append(plains, res)
				return err
			},
			func() error {
				res, err := service(ctx, srv, bin, db, fmt.Sprintf("obs_slot_%d", r), os.Getenv("BENCH_EXTRA"), rows)
				ours = append(ours, res)
				return err
			},
		}
		if len(variant) > 0 {
			runs = append(runs, func() error {
				res, err := service(ctx, srv, bin, db, fmt.Sprintf("var_slot_%d", r), os.Getenv("BENCH_EXTRA"), rows, variant...)
				vars = append(vars, res)
				return err
			})
		}
		for i := range runs {
			if err := runs[(i+r)%len(runs)](); err != nil {
				return 0, err
			}
		}
	}
	title := fmt.Sprintf("Catch-up: %d rows in transactions of %d", rows, perTx)
	if perTx >= rows {
		title = fmt.Sprintf("One transaction of %d rows", rows)
	}
	fmt.Printf("## %s\n\n", title)
	if rounds > 1 {
		fmt.Printf("%d rounds, each consumer once per round, the order rotated each round; each consumer's median round is shown.\n\n", rounds)
	}
	fmt.Println("| consumer (same run, same backlog) | time | events/s | peak RSS | CPU per 1M events |")
	fmt.Println("|---|---:|---:|---:|---:|")
	row := func(who string, r result) {
		fmt.Printf("| %s | %.1f s | %.0f | %d MiB | %.1f s |\n", who, r.dur.Seconds(), float64(rows)/r.dur.Seconds(),
			r.maxRSS/1024, r.cpu.Seconds()*1e6/float64(rows))
	}
	recv, plain, our := median(recvs), median(plains), median(ours)
	row("`pg_recvlogical` (pgoutput, to /dev/null)", recv)
	row("plain reader (pglogrepl → NDJSON file, no fsync)", plain)
	row("fraiseql-observers, defaults → file action (fsync)", our)
	if len(variant) > 0 {
		row("fraiseql-observers with "+strings.Join(variant, " "), median(vars))
	}
	var peak int64
	for _, o := range ours {
		peak = max(peak, o.maxRSS)
	}
	fmt.Printf("\nRatios of fraiseql-observers (medians): events/s **%.2f×** the plain reader's and **%.2f×** `pg_recvlogical`'s; "+
		"CPU per event **%.2f×** the plain reader's; peak RSS %d MiB (highest of the rounds).\n",
		plain.dur.Seconds()/our.dur.Seconds(), recv.dur.Seconds()/our.dur.Seconds(),
		our.cpu.Seconds()/plain.cpu.Seconds(), peak/1024)
	if rounds > 1 {
		fmt.Printf("Each round (events/s to the plain reader's, to `pg_recvlogical`'s):%s.\n", perRound(ours, plains, recvs))
	}
	if len(variant) > 0 {
		v := median(vars)
		fmt.Printf("With %s (median): events/s %.2f× the plain reader's, %.2f× `pg_recvlogical`'s, %.2f× the defaults'; CPU per event %.2f× the plain reader's.",
			strings.Join(variant, " "), plain.dur.Seconds()/v.dur.Seconds(), recv.dur.Seconds()/v.dur.Seconds(), our.dur.Seconds()/v.dur.Seconds(), v.cpu.Seconds()/plain.cpu.Seconds())
		if rounds > 1 {
			fmt.Printf(" Each round (to the plain reader's, to the defaults'):%s.", perRound(vars, plains, ours))
		}
		fmt.Println()
	}
	fmt.Println()
	return peak, nil
}

// perRound lists each round's events/s of rs as ratios to a's and b's in that round.
func perRound(rs, a, b []result) string {
	var sb strings.Builder
	for r := range rs {
		if r > 0 {
			sb.WriteString(";")
		}
		fmt.Fprintf(&sb, " %.2f× / %.2f×", a[r].dur.Seconds()/rs[r].dur.Seconds(), b[r].dur.Seconds()/rs[r].dur.Seconds())
	}
	return sb.String()
}

// median returns the result of the median duration (the lower one of an even count).
func median(rs []result) result {
	s := slices.Clone(rs)
	slices.SortFunc(s, func(a, b result) int { return cmp.Compare(a.dur, b.dur) })
	return s[(len(s)-1)/2]
}
