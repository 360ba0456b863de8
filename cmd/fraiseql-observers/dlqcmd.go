package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/spf13/cobra"

	"github.com/fraiseql/fraiseql-observers/configs"
	"github.com/fraiseql/fraiseql-observers/decoder"
	"github.com/fraiseql/fraiseql-observers/dlq"
	"github.com/fraiseql/fraiseql-observers/internal/words"
	"github.com/fraiseql/fraiseql-observers/pipeline"
	"github.com/fraiseql/fraiseql-observers/service"
)

func newDLQCmd(g *globals) *cobra.Command {
	c := &cobra.Command{
		Use:   "dlq",
		Short: "Inspect, retry and remove dead-lettered events",
		Long: `Operate on the dead-letter queue table (observer_dlq in state.schema) of the configured
slot, directly in PostgreSQL: these commands work whether or not the service runs. Item ids
are the table's numeric ids, as dlq list shows them.

A retried item is delivered once through its action, built from the current configuration
(the same code as start); on success it is marked delivered and kept for the record (it no
longer counts as pending); on failure it stays pending with last_retry_error set. A retry
delivers the event out of order with respect to later events of the same row, with its
original id so receivers can deduplicate. remove deletes an item for good.`,
	}
	c.AddCommand(newDLQStatsCmd(g), newDLQListCmd(g), newDLQShowCmd(g), newDLQRetryCmd(g), newDLQRetryAllCmd(g), newDLQRemoveCmd(g))
	return c
}

// dlqEnv is what the dlq commands work with.
type dlqEnv struct {
	cfg   *configs.Config
	pool  *pgxpool.Pool
	store *dlq.Store
}

func openDLQ(ctx context.Context, g *globals) (*dlqEnv, error) {
	cfg, err := g.loadConfig()
	if err != nil {
		return nil, err
	}
	pool, err := statePool(ctx, cfg)
	if err != nil {
		return nil, err
	}
	e := &dlqEnv{cfg: cfg, pool: pool, store: dlq.NewStore(pool, dlq.Options{Schema: cfg.State.Schema, Slot: cfg.Source.Slot})}
	ok, err := service.TableExists(ctx, pool, cfg.State.Schema, dlq.TableName)
	if err == nil && !ok {
		err = fmt.Errorf("the DLQ table %s does not exist: the service creates it when it starts with dlq.enabled", e.store.Table())
	}
	if err != nil {
		pool.Close()
		return nil, err
	}
	return e, nil
}

// openDLQFormat reads --format, then opens the DLQ; the caller closes e.pool.
func openDLQFormat(ctx context.Context, g *globals) (e *dlqEnv, asJSON bool, err error) {
	if asJSON, err = g.json(); err != nil {
		return nil, false, err
	}
	e, err = openDLQ(ctx, g)
	return e, asJSON, err
}

// newDLQItemCmd builds a dlq command that works on the one item its ID argument
// names: it reads --format, parses the id, opens the DLQ, and hands them to run,
// which does the work and prints the result as JSON or text.
func newDLQItemCmd(g *globals, use, short string, run func(ctx context.Context, e *dlqEnv, id int64, asJSON bool) error) *cobra.Command {
	return &cobra.Command{
		Use:   use,
		Short: short,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := parseItemID(args[0])
			if err != nil {
				return err
			}
			e, asJSON, err := openDLQFormat(cmd.Context(), g)
			if err != nil {
				return err
			}
			defer e.pool.Close()
			return run(cmd.Context(), e, id, asJSON)
		},
	}
}

func parseItemID(s string) (int64, error) {
	id, err := strconv.ParseInt(s, 10, 64)
	if err != nil || id < 1 {
		return 0, usageErr("invalid DLQ item id %q: ids are the numbers dlq list shows", s)
	}
	return id, nil
}

func newDLQStatsCmd(g *globals) *cobra.Command {
	var byObserver, byError bool
	c := &cobra.Command{
		Use:   "stats [--by-observer] [--by-error]",
		Short: "Count pending items, optionally by observer or by error",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			e, asJSON, err := openDLQFormat(cmd.Context(), g)
			if err != nil {
				return err
			}
			defer e.pool.Close()
			st, err := e.store.Stats(cmd.Context(), byObserver, byError)
			if err != nil {
				return err
			}
			if asJSON {
				return g.printJSON(st)
			}
			termSafe(&st)
			w := g.stdout
			fmt.Fprintf(w, "DLQ (slot %s): %s, %d delivered by retry, %s\n", e.cfg.Source.Slot, words.Count(int(st.Pending), "pending item", "pending items"), st.Delivered, words.Count(int(st.Retries), "retry", "retries"))
			if st.OldestPending != nil {
				fmt.Fprintf(w, "Oldest pending item: %s (%s ago)\n", st.OldestPending.UTC().Format(time.RFC3339), humanSeconds(time.Since(*st.OldestPending).Seconds()))
			}
			if byObserver {
				fmt.Fprintln(w, "By observer:")
				tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
				fmt.Fprintln(tw, "  OBSERVER\tACTION\tPENDING")
				for _, gr := range st.ByObserver {
					fmt.Fprintf(tw, "  %s\t%s\t%d\n", gr.Observer, gr.Action, gr.Count)
				}
				tw.Flush()
			}
			if byError {
				fmt.Fprintln(w, "By error:")
				tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
				fmt.Fprintln(tw, "  CLASS\tPENDING\tERROR")
				for _, gr := range st.ByError {
					fmt.Fprintf(tw, "  %s\t%d\t%s\n", gr.ErrorClass, gr.Count, oneLine(gr.Error, 1000))
				}
				tw.Flush()
			}
			return nil
		},
	}
	c.Flags().BoolVar(&byObserver, "by-observer", false, "count pending items per observer and action")
	c.Flags().BoolVar(&byError, "by-error", false, "count pending items per error class and message")
	return c
}

func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > n {
		return s[:n-1] + "…"
	}
	return s
}

func newDLQListCmd(g *globals) *cobra.Command {
	var o dlq.ListOptions
	var after string
	c := &cobra.Command{
		Use:   "list [--limit N] [--offset N] [--observer NAME] [--after TIME] [--status pending|delivered|all]",
		Short: "List items, oldest first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			asJSON, err := g.json()
			if err != nil {
				return err
			}
			if after != "" {
				if o.After, err = parseAfter(after); err != nil {
					return err
				}
			}
			if o.Limit < 0 || o.Offset < 0 {
				return usageErr("--limit and --offset must not be negative")
			}
			e, err := openDLQ(cmd.Context(), g)
			if err != nil {
				return err
			}
			defer e.pool.Close()
			items, err := e.store.List(cmd.Context(), o)
			if err != nil {
				return usageErr("%v", err)
			}
			if asJSON {
				if items == nil {
					items = []dlq.Item{}
				}
				return g.printJSON(items)
			}
			termSafe(&items)
			if len(items) == 0 {
				fmt.Fprintln(g.stdout, "No items.")
				return nil
			}
			tw := tabwriter.NewWriter(g.stdout, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tCREATED\tSTATUS\tOBSERVER\tACTION\tEVENT\tTABLE\tOP\tATTEMPTS\tRETRIES\tERROR")
			for _, it := range items {
				fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s.%s\t%s\t%d\t%d\t%s\n", it.ID, it.CreatedAt.UTC().Format(time.RFC3339), it.Status,
					it.Observer, it.Action, it.EventID, it.Schema, it.Table, it.Op, it.Attempts, it.Retries, oneLine(it.Error, 60))
			}
			return tw.Flush()
		},
	}
	c.Flags().IntVar(&o.Limit, "limit", 20, "at most N items (0: all)")
	c.Flags().IntVar(&o.Offset, "offset", 0, "skip the first N items")
	c.Flags().StringVar(&o.Observer, "observer", "", "only this observer's items")
	c.Flags().StringVar(&after, "after", "", "only items created after TIME (RFC 3339, or a duration ago such as 1h)")
	c.Flags().StringVar(&o.Status, "status", "pending", "pending, delivered or all")
	return c
}

// parseAfter reads an RFC 3339 time, a date, or a duration meaning "that long ago".
func parseAfter(s string) (time.Time, error) {
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, nil
		}
	}
	if d, err := time.ParseDuration(s); err == nil && d >= 0 {
		return time.Now().Add(-d), nil
	}
	return time.Time{}, usageErr("--after %q: expected an RFC 3339 time (2026-01-22T10:00:00Z), a date or a duration such as 1h", s)
}

func newDLQShowCmd(g *globals) *cobra.Command {
	return newDLQItemCmd(g, "show ID", "Show one item with its event", func(ctx context.Context, e *dlqEnv, id int64, asJSON bool) error {
		it, err := e.store.Get(ctx, id)
		if err != nil {
			return err
		}
		if asJSON {
			return g.printJSON(it)
		}
		termSafe(&it)
		printItem(g.stdout, it)
		return nil
	})
}

func printItem(w io.Writer, it dlq.Item) {
	ts := func(t *time.Time) string {
		if t == nil {
			return "-"
		}
		return t.UTC().Format(time.RFC3339Nano)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "Item:\t%d (%s)\n", it.ID, it.Status)
	fmt.Fprintf(tw, "Observer:\t%s\n", it.Observer)
	fmt.Fprintf(tw, "Action:\t%s (%s)\n", it.Action, it.ActionType)
	fmt.Fprintf(tw, "Event:\t%s (commit %s)\n", it.EventID, it.CommitLSN)
	fmt.Fprintf(tw, "Change:\t%s %s.%s\n", it.Op, it.Schema, it.Table)
	fmt.Fprintf(tw, "Error:\t%s\n", it.Error)
	fmt.Fprintf(tw, "Error class:\t%s\n", it.ErrorClass)
	fmt.Fprintf(tw, "Attempts:\t%d (first %s, last %s)\n", it.Attempts, ts(it.FirstAttemptAt), ts(it.LastAttemptAt))
	fmt.Fprintf(tw, "Stored:\t%s\n", it.CreatedAt.UTC().Format(time.RFC3339Nano))
	fmt.Fprintf(tw, "Retries:\t%d (last %s)\n", it.Retries, ts(it.LastRetryAt))
	if it.LastRetryError != nil {
		fmt.Fprintf(tw, "Last retry error:\t%s\n", *it.LastRetryError)
	}
	tw.Flush()
	var b bytes.Buffer
	if json.Indent(&b, it.Event, "  ", "  ") == nil {
		fmt.Fprintf(w, "Event JSON:\n  %s\n", b.String())
	} else {
		fmt.Fprintf(w, "Event JSON:\n  %s\n", it.Event)
	}
	if h := dlq.RecoveryHint(it); h != "" && it.Status == dlq.StatusPending {
		fmt.Fprint(w, h)
	}
}

// deliverers builds, once per action, the sink that re-delivers items, from the
// configuration, with the same builders as start.
type deliverers struct {
	b     *builder
	sinks map[string]pipeline.Sink
}

func newDeliverers(e *dlqEnv, g *globals) *deliverers {
	log := newCLILogger(g)
	return &deliverers{b: &builder{cfg: e.cfg, log: log, set: newSet(), pool: e.pool}, sinks: map[string]pipeline.Sink{}}
}

func (d *deliverers) deliver(ctx context.Context, it dlq.Item, ev *decoder.Event) error {
	sink, ok := d.sinks[it.Action]
	if !ok {
		co, ca := findAction(d.b.cfg, it.Action)
		if ca == nil {
			return fmt.Errorf("action %s is no longer in the configuration: remove the item or restore the action", it.Action)
		}
		var err error
		if sink, _, err = d.b.action(ctx, co, ca); err != nil {
			return fmt.Errorf("build action %s: %w", it.Action, err)
		}
		d.sinks[it.Action] = sink
	}
	dctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	return sink.Deliver(dctx, ev)
}

func (d *deliverers) close() {
	for _, s := range d.sinks {
		if c, ok := s.(pipeline.Closer); ok {
			c.Close()
		}
	}
}

func findAction(cfg *configs.Config, id string) (*configs.Observer, *configs.Action) {
	for _, o := range cfg.Observers {
		for _, a := range o.Actions {
			if a.ID == id {
				return o, a
			}
		}
	}
	return nil, nil
}

func newDLQRetryCmd(g *globals) *cobra.Command {
	return newDLQItemCmd(g, "retry ID", "Deliver one item again through its action", func(ctx context.Context, e *dlqEnv, id int64, asJSON bool) error {
		d := newDeliverers(e, g)
		defer d.close()
		it, err := e.store.Retry(ctx, id, d.deliver)
		if asJSON && (err == nil || errors.As(err, new(*dlq.RetryError))) {
			g.printJSON(retryOutcome(it, err))
			if err != nil {
				return &silentError{err}
			}
			return nil
		}
		if err != nil {
			return err
		}
		termSafe(&it)
		fmt.Fprintf(g.stdout, "Item %d delivered (event %s, action %s): marked delivered\n", it.ID, it.EventID, it.Action)
		return nil
	})
}

type retryResult struct {
	ID      int64  `json:"id"`
	EventID string `json:"event_id"`
	Action  string `json:"action"`
	Status  string `json:"status"`
	Retries int    `json:"retries"`
	Error   string `json:"error,omitempty"`
}

func retryOutcome(it dlq.Item, err error) retryResult {
	r := retryResult{ID: it.ID, EventID: it.EventID, Action: it.Action, Status: it.Status, Retries: it.Retries}
	if err != nil {
		r.Error = err.Error()
	}
	return r
}

func newDLQRetryAllCmd(g *globals) *cobra.Command {
	var observer string
	var dryRun bool
	c := &cobra.Command{
		Use:   "retry-all [--observer NAME] [--dry-run]",
		Short: "Deliver every pending item again, oldest first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			e, asJSON, err := openDLQFormat(cmd.Context(), g)
			if err != nil {
				return err
			}
			defer e.pool.Close()
			items, err := e.store.List(cmd.Context(), dlq.ListOptions{Observer: observer})
			if err != nil {
				return err
			}
			if dryRun {
				if asJSON {
					return g.printJSON(map[string]any{"dry_run": true, "would_retry": len(items)})
				}
				fmt.Fprintf(g.stdout, "Would retry %s\n", words.Count(len(items), "item", "items"))
				return nil
			}
			d := newDeliverers(e, g)
			defer d.close()
			results := []retryResult{}
			failed := 0
			for _, it := range items {
				got, err := e.store.Retry(cmd.Context(), it.ID, d.deliver)
				if got.ID == 0 {
					got = it
				}
				if err != nil {
					failed++
				}
				results = append(results, retryOutcome(got, err))
			}
			if asJSON {
				g.printJSON(map[string]any{"retried": len(items), "delivered": len(items) - failed, "failed": failed, "items": results})
			} else {
				termSafe(&results)
				fmt.Fprintf(g.stdout, "Retried %s: %d delivered, %d failed\n", words.Count(len(items), "item", "items"), len(items)-failed, failed)
				for _, r := range results {
					if r.Error != "" {
						fmt.Fprintf(g.stdout, "  item %d (%s): %s\n", r.ID, r.Action, r.Error)
					}
				}
			}
			if failed > 0 {
				return &silentError{fmt.Errorf("%d of %d items failed again", failed, len(items))}
			}
			return nil
		},
	}
	c.Flags().StringVar(&observer, "observer", "", "only this observer's items")
	c.Flags().BoolVar(&dryRun, "dry-run", false, "only count the items that would be retried")
	return c
}

func newDLQRemoveCmd(g *globals) *cobra.Command {
	return newDLQItemCmd(g, "remove ID", "Delete one item for good", func(ctx context.Context, e *dlqEnv, id int64, asJSON bool) error {
		it, err := e.store.Remove(ctx, id)
		if err != nil {
			return err
		}
		if asJSON {
			return g.printJSON(map[string]any{"removed": it})
		}
		termSafe(&it)
		fmt.Fprintf(g.stdout, "Removed item %d (event %s, action %s, %s)\n", it.ID, it.EventID, it.Action, it.Status)
		return nil
	})
}
