package main

import (
	"fmt"
	"strings"

	"github.com/fraiseql/fraiseql-observers/configs"
)

// printTransport writes the scenario's tables.
func printTransport(cases []transportCase, rs []transportResult, events int) {
	workers := configs.Default().ConcurrentExecution.MaxConcurrency
	delay := fmt.Sprintf("%d ms", receiverDelay.Milliseconds())
	fmt.Printf("## Transport: %d single-row transactions → webhook answering after %s (same backlog, same run)\n\n", events, delay)
	fmt.Printf("Every process with defaults (one webhook action: per-row order, `concurrent_execution.max_concurrency` %d", workers)
	fmt.Println(" workers per process, batch_size 1); nats: one local nats-server -js, R1 file storage, 16 partitions, a fresh stream per case.")
	fmt.Println("Time runs from the start of the in-process service or the reader (the executors, started before, own their partitions by")
	fmt.Println("then) until the receiver has answered every event. CPU and peak RSS (VmHWM) from /proc; CPU of the executors counted from")
	fmt.Println("the reader's start.")
	fmt.Println()
	fmt.Println("| mode | time | events/s | vs in-process | CPU per 1M events (reader + executors) | per process: CPU per 1M events, peak RSS | executors settled in |")
	fmt.Println("|---|---:|---:|---:|---:|---|---:|")
	base := rs[0].dur.Seconds()
	for i, c := range cases {
		r := rs[i]
		settle := "—"
		if c.executors > 0 {
			settle = fmt.Sprintf("%.1f s", r.settle.Seconds())
		}
		var per []string
		for _, p := range r.procs {
			per = append(per, fmt.Sprintf("%s %.0f s, %d MiB", p.name, p.cpu.Seconds()*1e6/float64(events), p.peak/1024))
		}
		fmt.Printf("| %s | %.1f s | %.0f | %.2f× | %.1f s | %s | %s |\n", c.title(), r.dur.Seconds(), float64(events)/r.dur.Seconds(),
			base/r.dur.Seconds(), r.cpu.Seconds()*1e6/float64(events), strings.Join(per, "; "), settle)
	}
	fmt.Println()
	fmt.Printf("Where the time went: requests open at the receiver on average (each at least %s; the ceiling is %d per delivering process)\n", delay, workers)
	fmt.Println("and the cores each party kept busy over the case (CPU seconds / wall seconds; the machine has", nproc(), "cores).")
	fmt.Println()
	fmt.Println("\"In flight\" is the most `observer_inflight_bytes` (bounded by `pipeline.max_in_flight_bytes`) a delivering process reported;")
	fmt.Println("\"all published\" is when the reader's `observer_transport_published_total` reached the backlog (sampled every 100 ms).")
	fmt.Println()
	fmt.Println("| mode | requests open (ceiling) | in flight (max) | all published | service processes | nats-server | PostgreSQL | receiver (benchrun) | total |")
	fmt.Println("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
	for i, c := range cases {
		r := rs[i]
		d := r.dur.Seconds()
		ceiling := workers * max(c.executors, 1)
		published := "—"
		if c.executors > 0 {
			published = fmt.Sprintf("%.1f s", r.published.Seconds())
		}
		fmt.Printf("| %s | %.1f (%d) | %.1f MiB | %s | %.2f | %.2f | %.2f | %.2f | %.2f |\n", c.title(), r.busy.Seconds()/d, ceiling,
			float64(r.inflight)/(1<<20), published, r.cpu.Seconds()/d, r.nats.Seconds()/d, r.pg.Seconds()/d, r.self.Seconds()/d,
			(r.cpu+r.nats+r.pg+r.self).Seconds()/d)
	}
	for i, c := range cases {
		if rs[i].repeats > 0 {
			fmt.Printf("\n%s: %d events delivered more than once (same id).\n", c.title(), rs[i].repeats)
		}
	}
	fmt.Println()
}
