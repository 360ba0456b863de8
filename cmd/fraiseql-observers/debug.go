package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/fraiseql/fraiseql-observers/configs"
	"github.com/fraiseql/fraiseql-observers/dlq"
	"github.com/fraiseql/fraiseql-observers/internal/words"
	"github.com/fraiseql/fraiseql-observers/lsn"
	"github.com/fraiseql/fraiseql-observers/pipeline"
	"github.com/fraiseql/fraiseql-observers/service"
)

func newDebugEventCmd(g *globals) *cobra.Command {
	var history int
	var eventID string
	c := &cobra.Command{
		Use:   "debug-event (--history N | --event-id ID)",
		Short: "Show what happened to recent events: observer verdicts, action results",
		Long: `Show, from the running service's memory, what happened to recent events: for each
candidate observer whether it matched (and its condition's value or error), and for each of
its actions the delivery status, attempts, last error and latency. Row values are never
shown. --event-id shows one event; one the service no longer remembers is looked up in the
DLQ. Needs the running service (exit code 6 otherwise).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if cmd.Flags().Changed("history") && eventID != "" {
				return usageErr("give --history or --event-id, not both")
			}
			return runDebugEvent(cmd.Context(), g, history, eventID)
		},
	}
	c.Flags().IntVar(&history, "history", 10, "number of recent events to show, newest first")
	c.Flags().StringVar(&eventID, "event-id", "", "show the event with this id (0/16B3748:3)")
	return c
}

func runDebugEvent(ctx context.Context, g *globals, history int, id string) error {
	asJSON, err := g.json()
	if err != nil {
		return err
	}
	if id != "" {
		if _, err := lsn.ParsePosition(id); err != nil {
			return usageErr("--event-id: %v (event ids look like 0/16B3748:3)", err)
		}
	} else if history < 1 {
		return usageErr("--history must be at least 1")
	}
	client, err := g.adminFromConfig()
	if err != nil {
		return err
	}
	if id == "" {
		var evs []pipeline.DebugEvent
		if err := client.do(ctx, "GET", "/debug/events?history="+strconv.Itoa(history), nil, &evs); err != nil {
			return serviceErr(err)
		}
		if asJSON {
			if evs == nil {
				evs = []pipeline.DebugEvent{}
			}
			return g.printJSON(evs)
		}
		termSafe(&evs)
		if len(evs) == 0 {
			fmt.Fprintln(g.stdout, "No events routed since the service started.")
		}
		for _, ev := range evs {
			printDebugEvent(g.stdout, ev)
		}
		return nil
	}
	var ev pipeline.DebugEvent
	err = client.do(ctx, "GET", "/debug/events/"+url.PathEscape(id), nil, &ev)
	var ae *apiError
	if errors.As(err, &ae) && ae.body.Code == "event_not_remembered" {
		return eventNotRemembered(ctx, g, id)
	}
	if err != nil {
		return serviceErr(err)
	}
	if asJSON {
		return g.printJSON(ev)
	}
	termSafe(&ev)
	printDebugEvent(g.stdout, ev)
	return nil
}

// eventNotRemembered explains a miss and points to the DLQ when the event is there.
func eventNotRemembered(ctx context.Context, g *globals, id string) error {
	msg := fmt.Sprintf("event %s is not in the service's recent event history (it remembers the last %d events since it started)", id, pipeline.DefaultDebugHistory)
	cfg, _, err := configs.LoadWith(g.config, configs.Options{DeferEnv: true})
	if err != nil {
		return errors.New(msg)
	}
	pool, err := statePool(ctx, cfg)
	if err != nil {
		return errors.New(msg)
	}
	defer pool.Close()
	if ok, _ := service.TableExists(ctx, pool, cfg.State.Schema, dlq.TableName); !ok {
		return errors.New(msg)
	}
	items, _ := dlq.NewStore(pool, dlq.Options{Schema: cfg.State.Schema, Slot: cfg.Source.Slot}).ItemsOf(ctx, id)
	for _, n := range items {
		msg += fmt.Sprintf("; it is in the DLQ as item %d: run `fraiseql-observers dlq show %d`", n, n)
	}
	return errors.New(msg)
}

func printDebugEvent(w io.Writer, ev pipeline.DebugEvent) {
	fmt.Fprintf(w, "Event %s  %s %s.%s  committed %s  old_kind %s\n", ev.ID, ev.Op, ev.Schema, ev.Table,
		ev.CommitTime.UTC().Format("2006-01-02T15:04:05.000Z"), ev.OldKind)
	if len(ev.Observers) == 0 {
		fmt.Fprintln(w, "  no observer watches this table and operation")
	}
	for _, o := range ev.Observers {
		switch {
		case o.ConditionError != "":
			fmt.Fprintf(w, "  observer %s: condition error: %s (condition: %s)\n", o.Name, o.ConditionError, o.Condition)
		case o.ConditionPending:
			fmt.Fprintf(w, "  observer %s: condition being evaluated by the actions' workers (over the router's budget) (%s)\n", o.Name, o.Condition)
		case !o.Matched:
			fmt.Fprintf(w, "  observer %s: not matched: condition is false (%s)\n", o.Name, o.Condition)
		case o.Condition != "":
			fmt.Fprintf(w, "  observer %s: matched: condition is true (%s)\n", o.Name, o.Condition)
		default:
			fmt.Fprintf(w, "  observer %s: matched (no condition)\n", o.Name)
		}
		for _, a := range o.Actions {
			fmt.Fprintf(w, "    action %s (%s): %s, %s, %.1fms", a.ID, a.Type, a.Status, words.Count(a.Attempts, "attempt", "attempts"), a.LatencyMS)
			if a.LastError != "" {
				fmt.Fprintf(w, ", last error: %s", a.LastError)
			}
			fmt.Fprintln(w)
		}
	}
}

func newCacheStatsCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "cache-stats",
		Short: "Show the row-image cache and the dedup cache of the running service",
		Long: `Show the row-image cache (hits, misses, hit rate, entries, bytes, evictions) and the
dedup cache (entries, events dropped as already delivered) of the running service. Both live
in the service's memory: no Redis. Needs the running service (exit code 6 otherwise).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			asJSON, err := g.json()
			if err != nil {
				return err
			}
			client, err := g.adminFromConfig()
			if err != nil {
				return err
			}
			var doc service.CacheStatsDoc
			if err := client.do(cmd.Context(), "GET", "/cache/stats", nil, &doc); err != nil {
				return serviceErr(err)
			}
			if asJSON {
				return g.printJSON(doc)
			}
			w := g.stdout
			rc := doc.RowCache
			if rc.Enabled {
				fmt.Fprintf(w, "Row cache: hit rate %.1f%% (%d hits, %d misses), %d entries, %s of %s, %d evicted, %d rejected\n",
					rc.HitRate*100, rc.Hits, rc.Misses, rc.Entries, humanBytes(float64(rc.CostBytes)), humanBytes(float64(rc.MaxBytes)), rc.Evicted, rc.Rejected)
			} else {
				fmt.Fprintln(w, "Row cache: disabled (caching.enabled: false)")
			}
			d := doc.Dedup
			if d.Enabled {
				fmt.Fprintf(w, "Dedup cache: %d of %d entries; dropped as already delivered: %d by the cache, %d by checkpoints\n",
					d.Entries, d.MaxEntries, d.DroppedByCache, d.DroppedCheckpoint)
			} else {
				fmt.Fprintf(w, "Dedup cache: disabled (deduplication.enabled: false); dropped by checkpoints: %d\n", d.DroppedCheckpoint)
			}
			return nil
		},
	}
}

func newReplayCmd(g *globals) *cobra.Command {
	var from, to, observer string
	var requireOld bool
	c := &cobra.Command{
		Use:   "replay --from-lsn X/Y [--to-lsn X/Y] [--observer NAME] [--require-old-images]",
		Short: "Deliver again the events committed from an LSN on",
		Long: `Make the running service deliver again, with their original ids, the events of the
transactions committed at or after --from-lsn (and at or before --to-lsn), for every observer
or only --observer. The service rewinds its stream; PostgreSQL sends those transactions again.
This reaches back only as far as the slot's confirmed_flush_lsn: set replay_window to keep
history replayable. An older position is refused with the oldest replayable LSN (exit code 2),
never silently moved forward. Needs the running service (exit code 6 otherwise). With
transport.type nats, run it against the reader: it publishes the range to the stream again and
the executors deliver it (an executor refuses, naming the reader).

A replay starts the row cache empty: an observer whose condition reads old values (old.x,
field_changed, changes) of a table without REPLICA IDENTITY FULL cannot evaluate it for a
replayed UPDATE or DELETE of a row not changed earlier in the replayed range. The command
warns about each such observer in scope; --require-old-images refuses the replay instead
(exit code 2).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			asJSON, err := g.json()
			if err != nil {
				return err
			}
			if from == "" {
				return usageErr("--from-lsn is required")
			}
			for _, v := range []string{from, to} {
				if _, err := lsn.Parse(v); v != "" && err != nil {
					return usageErr("invalid LSN %q: %v", v, err)
				}
			}
			client, err := g.adminFromConfig()
			if err != nil {
				return err
			}
			var res service.ReplayResult
			body := map[string]any{"from_lsn": from, "to_lsn": to, "observer": observer, "require_old_images": requireOld}
			if err := client.do(cmd.Context(), "POST", "/replay", body, &res); err != nil {
				return serviceErr(err)
			}
			if asJSON {
				return g.printJSON(res)
			}
			termSafe(&res)
			for _, w := range res.Warnings {
				fmt.Fprintln(g.stderr, "warning:", w)
			}
			end := "the current position"
			if res.ToLSN != "" {
				end = res.ToLSN
			}
			fmt.Fprintf(g.stdout, "Replaying transactions committed from %s to %s for %s: %v\n", res.FromLSN, end, words.Count(len(res.Actions), "action", "actions"), res.Actions)
			fmt.Fprintln(g.stdout, "Events are delivered again with their original ids as PostgreSQL sends them again; watch observer_actions_executed_total.")
			return nil
		},
	}
	c.Flags().StringVar(&from, "from-lsn", "", "first commit LSN to deliver again (X/Y)")
	c.Flags().StringVar(&to, "to-lsn", "", "last commit LSN to deliver again (default: everything received)")
	c.Flags().StringVar(&observer, "observer", "", "only this observer's actions (default: every observer)")
	c.Flags().BoolVar(&requireOld, "require-old-images", false, "refuse the replay when an observer in scope needs old values the replayed changes cannot carry")
	return c
}
