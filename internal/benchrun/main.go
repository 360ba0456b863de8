// Command benchrun measures the service end to end against a throwaway PostgreSQL and
// reports every figure as a ratio to a baseline measured in the same run:
//
//   - catch-up: a backlog of N rows (transactions of 100 rows) consumed into the file
//     sink, next to pg_recvlogical and the plain reader (plain.go: a minimal pglogrepl
//     loop writing NDJSON to a file, the floor) consuming the same backlog from their
//     own slots, with events/s, peak RSS, CPU per 1M events and the ratios;
//   - one transaction of N rows, the same way (peak memory must not grow with it);
//   - a large backlog (-big-rows, 10,000,000 by default: about 4.6 GB of WAL), the same
//     way as the first (peak memory must not grow with the backlog either);
//   - observers: N events through 10 observers to a local HTTP receiver and to file
//     actions, with match-to-delivery latency percentiles;
//   - snapshot: a backfill of an N-row table into the file sink, next to COPY ... TO
//     STDOUT of the same table (the read limit);
//   - live: single-row transactions committed by pgbench at fixed rates, streamed to a
//     webhook receiver on loopback by the service and by the plain reader POSTing each
//     change in turn, with commit → arrival percentiles per rate (live.go);
//   - transport: a backlog of single-row transactions delivered by webhook to a
//     receiver answering after 2 ms, in-process and through the nats transport with
//     one reader and 1, 2 and 3 executor processes (transport.go);
//   - idle: the service on a table nobody writes to, its CPU, RSS and Go heap over a minute
//     (-idle), sampled six times.
//
// It is run by `make bench` (scripts/bench.sh); results go to stdout as Markdown.
// BENCH_ADMIN=host:port serves the admin API of the service measured by the catch-up
// and live scenarios there, so that it can be profiled while it runs
// (curl 'http://host:port/debug/pprof/profile?seconds=10').
// Usage: go run ./internal/benchrun -bin bin/fraiseql-observers [-rows 1000000]
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/fraiseql/fraiseql-observers/internal/pgtest"
)

func main() {
	bin := flag.String("bin", "bin/fraiseql-observers", "service binary")
	rows := flag.Int("rows", 1_000_000, "rows in each backlog")
	bigRows := flag.Int("big-rows", 10_000_000, "rows of the large backlog (memory must not grow with it); 0 skips it")
	only := flag.String("only", "", "run one scenario: catchup, bigtx, big, observers, snapshot, live, transport or idle")
	idleFor := flag.Duration("idle", time.Minute, "how long the idle scenario watches the service")
	liveRates := flag.String("live-rates", "1000,2500,4000", "live scenario: write rates (rows/s, comma-separated)")
	liveFor := flag.Duration("live-for", 20*time.Second, "live scenario: load per rate and consumer")
	liveConsumers := flag.String("live-consumers", "service,plain", "live scenario: consumers (service[+VAR=value...] or plain)")
	liveTogether := flag.Bool("live-together", false, "live scenario: run the consumers at the same time instead of one after the other")
	rounds := flag.Int("catchup-rounds", 3, "catch-up and one-transaction scenarios: rounds of the three consumers (the 10M-row backlog runs one)")
	transportEvents := flag.Int("transport-events", 50_000, "transport scenario: single-row transactions in its backlog; 0 skips it")
	plain := flag.Bool("plain-reader", false, "internal: run as the plain reader child process")
	conninfo := flag.String("conninfo", "", "plain reader: replication connection string")
	slot := flag.String("slot", "", "plain reader: slot")
	endpos := flag.String("endpos", "", "plain reader: stop once everything up to this LSN is written")
	out := flag.String("out", "", "plain reader: output file")
	post := flag.String("post", "", "plain reader: POST each change to this URL instead of writing a file (runs until SIGTERM)")
	status := flag.Duration("status-interval", time.Second, "plain reader: how often it confirms")
	flag.Parse()
	if *plain {
		if err := plainReaderMain(*conninfo, *slot, *endpos, *out, *post, *status); err != nil {
			fmt.Fprintln(os.Stderr, "plain reader:", err)
			os.Exit(1)
		}
		return
	}
	rates, err := parseRates(*liveRates)
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchrun: -live-rates:", err)
		os.Exit(2)
	}
	opts := options{bin: *bin, rows: *rows, rounds: *rounds, bigRows: *bigRows, only: *only, idleFor: *idleFor, transportEvents: *transportEvents,
		live: liveOptions{rates: rates, loadFor: *liveFor, consumers: *liveConsumers, together: *liveTogether}}
	if err := run(opts); err != nil {
		fmt.Fprintln(os.Stderr, "benchrun:", err)
		os.Exit(1)
	}
}

// options are the scenarios' parameters.
type options struct {
	bin     string
	rows    int
	rounds  int // of the catch-up consumers
	bigRows int
	only    string
	idleFor time.Duration
	live    liveOptions
	// transportEvents is the transport scenario's backlog (0 skips it).
	transportEvents int
}

func parseRates(s string) ([]int, error) {
	var rates []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("not a rate: %q", f)
		}
		rates = append(rates, n)
	}
	return rates, nil
}

func run(o options) error {
	bin, rows, only := o.bin, o.rows, o.only
	srv, err := pgtest.Start(pgtest.Options{Settings: map[string]string{
		"max_wal_size":                        "4GB",
		"checkpoint_timeout":                  "30min",
		"logical_decoding_work_mem":           "64MB",
		"wal_sender_timeout":                  "120s",
		"log_replication_commands":            "off",
		"shared_buffers":                      "256MB",
		"max_slot_wal_keep_size":              "-1",
		"autovacuum":                          "off",
		"synchronous_commit":                  "off",
		"wal_writer_flush_after":              "1MB",
		"full_page_writes":                    "off",
		"max_replication_slots":               "64", // 4 per catch-up round (BENCH_CATCHUP_ROUNDS, BENCH_CATCHUP_VARIANT)
		"max_wal_senders":                     "10",
		"wal_compression":                     "off",
		"log_min_messages":                    "warning",
		"log_checkpoints":                     "off",
		"track_commit_timestamp":              "off",
		"listen_addresses":                    "'127.0.0.1'",
		"idle_in_transaction_session_timeout": "0",
	}})
	if err != nil {
		return err
	}
	defer srv.Remove()
	ctx := context.Background()
	fmt.Printf("# End-to-end benchmarks (%s, %d rows per backlog)\n\n", time.Now().UTC().Format("2006-01-02"), rows)
	var memory []string // the service's peak RSS per catch-up scenario
	if only == "" || only == "catchup" {
		rss, err := catchUp(ctx, srv, bin, rows, 100, o.rounds)
		if err != nil {
			return fmt.Errorf("catch-up: %w", err)
		}
		memory = append(memory, fmt.Sprintf("| %d rows in transactions of 100 | %d MiB |", rows, rss/1024))
	}
	if only == "" || only == "bigtx" {
		rss, err := catchUp(ctx, srv, bin, rows, rows, o.rounds)
		if err != nil {
			return fmt.Errorf("one big transaction: %w", err)
		}
		memory = append(memory, fmt.Sprintf("| one transaction of %d rows | %d MiB |", rows, rss/1024))
	}
	if (only == "" || only == "big") && o.bigRows > 0 {
		rss, err := catchUp(ctx, srv, bin, o.bigRows, 100, 1)
		if err != nil {
			return fmt.Errorf("large backlog: %w", err)
		}
		memory = append(memory, fmt.Sprintf("| %d rows in transactions of 100 | %d MiB |", o.bigRows, rss/1024))
	}
	if len(memory) > 1 {
		fmt.Println("## Peak RSS of fraiseql-observers (defaults) by backlog")
		fmt.Println()
		fmt.Println("| backlog | peak RSS |")
		fmt.Println("|---|---:|")
		for _, m := range memory {
			fmt.Println(m)
		}
		fmt.Println()
	}
	if only == "" || only == "observers" {
		if err := observers(ctx, srv, bin, rows); err != nil {
			return fmt.Errorf("observers: %w", err)
		}
	}
	if only == "" || only == "snapshot" {
		if err := snapshotBench(ctx, srv, bin, rows); err != nil {
			return fmt.Errorf("snapshot: %w", err)
		}
	}
	if only == "" || only == "live" {
		if err := live(ctx, srv, bin, o.live); err != nil {
			return fmt.Errorf("live: %w", err)
		}
	}
	if (only == "" || only == "transport") && o.transportEvents > 0 {
		if err := transportBench(ctx, srv, bin, o.transportEvents); err != nil {
			return fmt.Errorf("transport: %w", err)
		}
	}
	if only == "" || only == "idle" {
		if err := idle(ctx, srv, bin, o.idleFor); err != nil {
			return fmt.Errorf("idle: %w", err)
		}
	}
	return nil
}
