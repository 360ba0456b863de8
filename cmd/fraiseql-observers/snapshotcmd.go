package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/fraiseql/fraiseql-observers/snapshot"
)

func newSnapshotCmd(g *globals) *cobra.Command {
	var table, where, observer string
	var detach bool
	c := &cobra.Command{
		Use:   "snapshot --table SCHEMA.TABLE [--where SQL] [--observer NAME]",
		Short: "Backfill the rows a table holds (READ events) through the running service",
		Long: `Make the running service read the rows the table already holds, in key order and in chunks,
while it goes on streaming, and deliver each as an event with op READ: to the observers of the
table whose event_type lists READ, or only to --observer (whatever its event_type lists; its
condition still applies). --where reads only the rows matching an SQL condition on the table's
columns (one expression: no statement, comment or parameter). A row the stream changes while its
chunk is read is left to the stream's newer event. The snapshot survives restarts: it resumes after
its last completed chunk. The command follows the progress (a progress bar on a terminal, a line
every ten seconds otherwise) until the snapshot ends; --detach returns at once, and interrupting
the command does not stop the snapshot (snapshot cancel does). Needs the running service (exit
code 6 otherwise); a request that cannot run is refused with exit code 2 and nothing is started.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			asJSON, err := g.json()
			if err != nil {
				return err
			}
			if table == "" {
				return usageErr("--table is required (schema.table)")
			}
			client, err := g.adminFromConfig()
			if err != nil {
				return err
			}
			var info snapshot.Info
			body := map[string]string{"table": table, "where": where, "observer": observer}
			if err := client.do(cmd.Context(), "POST", "/snapshots", body, &info); err != nil {
				return snapshotCmdErr(err)
			}
			if detach {
				if asJSON {
					return g.printJSON(info)
				}
				termSafe(&info)
				fmt.Fprintf(g.stdout, "Snapshot %d of %s %s; follow it with: fraiseql-observers snapshot status %d\n", info.ID, info.Table, info.State, info.ID)
				return nil
			}
			if !asJSON {
				line := info
				termSafe(&line)
				fmt.Fprintf(g.stdout, "Snapshot %d of %s requested (about %s)\n", line.ID, line.Table, nouns(line.RowsEstimate, "row"))
			}
			return followSnapshot(cmd.Context(), g, client, info, asJSON)
		},
	}
	c.Flags().StringVar(&table, "table", "", "the table to read (schema.table)")
	c.Flags().StringVar(&where, "where", "", "read only the rows matching this SQL condition on the table's columns")
	c.Flags().StringVar(&observer, "observer", "", "deliver to this observer only (default: the observers of the table that list READ)")
	c.Flags().BoolVar(&detach, "detach", false, "return once the snapshot is requested instead of following it")
	c.AddCommand(newSnapshotStatusCmd(g), newSnapshotCancelCmd(g))
	return c
}

func newSnapshotStatusCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "status [ID]",
		Short: "Show the service's snapshots (or one), with progress, rate and ETA",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			asJSON, err := g.json()
			if err != nil {
				return err
			}
			client, err := g.adminFromConfig()
			if err != nil {
				return err
			}
			var infos []snapshot.Info
			if len(args) == 1 {
				id, err := snapshotID(args[0])
				if err != nil {
					return err
				}
				var info snapshot.Info
				if err := client.do(cmd.Context(), "GET", "/snapshots/"+url.PathEscape(strconv.FormatInt(id, 10)), nil, &info); err != nil {
					return snapshotCmdErr(err)
				}
				if asJSON {
					return g.printJSON(info)
				}
				infos = []snapshot.Info{info}
			} else {
				if err := client.do(cmd.Context(), "GET", "/snapshots", nil, &infos); err != nil {
					return snapshotCmdErr(err)
				}
				if asJSON {
					return g.printJSON(infos)
				}
			}
			if len(infos) == 0 {
				fmt.Fprintln(g.stdout, "No snapshots.")
				return nil
			}
			termSafe(&infos)
			printSnapshots(g.stdout, infos)
			return nil
		},
	}
}

func newSnapshotCancelCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "cancel ID",
		Short: "Stop a pending or running snapshot (rows already delivered stay delivered)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			asJSON, err := g.json()
			if err != nil {
				return err
			}
			id, err := snapshotID(args[0])
			if err != nil {
				return err
			}
			client, err := g.adminFromConfig()
			if err != nil {
				return err
			}
			var info snapshot.Info
			if err := client.do(cmd.Context(), "POST", "/snapshots/"+strconv.FormatInt(id, 10)+"/cancel", nil, &info); err != nil {
				return snapshotCmdErr(err)
			}
			if asJSON {
				return g.printJSON(info)
			}
			termSafe(&info)
			fmt.Fprintln(g.stdout, "Snapshot "+snapshotLine(info))
			return nil
		},
	}
}

func snapshotID(s string) (int64, error) {
	id, err := strconv.ParseInt(s, 10, 64)
	if err != nil || id < 1 {
		return 0, usageErr("snapshot ids are positive numbers, not %q (see snapshot status)", s)
	}
	return id, nil
}

// snapshotCmdErr gives the snapshot endpoints' errors their exit codes: a request the
// service refuses is a usage error (2), an unknown id too.
func snapshotCmdErr(err error) error {
	var ae *apiError
	if errors.As(err, &ae) && (ae.body.Code == "snapshot_conflict" || ae.body.Code == "snapshot_not_found" || ae.body.Code == "snapshots_unavailable") {
		return &codeError{code: exitConfig, err: err}
	}
	return serviceErr(err)
}

// followSnapshot shows the progress of a snapshot until it ends: a progress bar
// redrawn every second on a terminal, a line every ten seconds otherwise. It returns
// an error when the snapshot failed or was cancelled.
func followSnapshot(ctx context.Context, g *globals, client *adminClient, info snapshot.Info, asJSON bool) error {
	var tty *os.File
	if !asJSON {
		tty = terminalOf(g.stdout)
	}
	var lastLine time.Time
	for {
		if finishedState(info.State) {
			if tty != nil {
				fmt.Fprint(tty, "\r\033[K")
			}
			if asJSON {
				if err := g.printJSON(info); err != nil {
					return err
				}
			} else {
				termSafe(&info)
				fmt.Fprintln(g.stdout, "Snapshot "+snapshotLine(info))
			}
			switch info.State {
			case snapshot.StateFailed:
				return &silentError{fmt.Errorf("snapshot %d of %s failed: %s", info.ID, info.Table, info.Error)}
			case snapshot.StateCancelled:
				return &silentError{fmt.Errorf("snapshot %d of %s was cancelled", info.ID, info.Table)}
			}
			return nil
		}
		switch {
		case tty != nil:
			fmt.Fprint(tty, "\r\033[K"+progressBar(info))
		case !asJSON && time.Since(lastLine) >= 10*time.Second:
			line := info
			termSafe(&line)
			fmt.Fprintln(g.stdout, "Snapshot "+snapshotLine(line))
			lastLine = time.Now()
		}
		select {
		case <-ctx.Done():
			if tty != nil {
				fmt.Fprintln(tty)
			}
			fmt.Fprintf(g.stderr, "stopped following; snapshot %d goes on in the service (snapshot status %d, snapshot cancel %d)\n", info.ID, info.ID, info.ID)
			return nil
		case <-time.After(time.Second):
		}
		if err := client.do(ctx, "GET", "/snapshots/"+strconv.FormatInt(info.ID, 10), nil, &info); err != nil {
			if ctx.Err() != nil {
				continue
			}
			return snapshotCmdErr(err)
		}
	}
}

func finishedState(s string) bool {
	return s == snapshot.StateDone || s == snapshot.StateCancelled || s == snapshot.StateFailed
}

// terminalOf returns the terminal w writes to, under the termWriter that every
// command's output goes through, or nil. The progress bar is written to it directly:
// it holds only numbers and the cursor controls that redraw it.
func terminalOf(w io.Writer) *os.File {
	if tw, ok := w.(*termWriter); ok {
		tw.Flush()
		w = tw.w
	}
	if f, ok := w.(*os.File); ok && isTerminal(f) {
		return f
	}
	return nil
}

// progressBar renders "[#####.....]  45.2%  452,301 / ~1,000,000 rows  12,345 rows/s  ETA 44s".
func progressBar(i snapshot.Info) string {
	const width = 30
	frac := 0.0
	if i.RowsEstimate > 0 {
		frac = min(float64(i.RowsRead)/float64(i.RowsEstimate), 1)
	}
	n := int(frac * width)
	bar := "[" + strings.Repeat("#", n) + strings.Repeat(".", width-n) + "]"
	s := fmt.Sprintf("%s %5.1f%%  %s / ~%s rows  %s rows/s", bar, 100*frac, thousands(i.RowsRead), thousands(i.RowsEstimate), thousands(int64(i.RowsPerSecond)))
	if i.ETASeconds != nil {
		s += "  ETA " + humanSeconds(*i.ETASeconds)
	}
	return s
}

// snapshotLine is one snapshot in a sentence: "3 of public.orders: running, ...".
func snapshotLine(i snapshot.Info) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d of %s", i.ID, i.Table)
	if i.Where != "" {
		fmt.Fprintf(&b, " where %s", i.Where)
	}
	if i.Observer != "" {
		fmt.Fprintf(&b, " for observer %s", i.Observer)
	}
	fmt.Fprintf(&b, ": %s", i.State)
	switch i.State {
	case snapshot.StatePending:
		fmt.Fprintf(&b, ", about %s to read", nouns(i.RowsEstimate, "row"))
	case snapshot.StateRunning:
		fmt.Fprintf(&b, ", %s of about %s rows read in %s", thousands(i.RowsRead), thousands(i.RowsEstimate), nouns(i.Chunks, "chunk"))
		if i.RowsPerSecond > 0 {
			fmt.Fprintf(&b, ", %s rows/s", thousands(int64(i.RowsPerSecond)))
		}
		if i.ETASeconds != nil {
			fmt.Fprintf(&b, ", ETA %s", humanSeconds(*i.ETASeconds))
		}
	default:
		fmt.Fprintf(&b, ", %s read in %s, %s delivered as READ", nouns(i.RowsRead, "row"), nouns(i.Chunks, "chunk"), thousands(i.RowsSent))
		if d := i.RowsRead - i.RowsSent; d > 0 && i.State == snapshot.StateDone {
			fmt.Fprintf(&b, " (%s changed while read: delivered by the stream)", thousands(d))
		}
		if i.Error != "" {
			fmt.Fprintf(&b, ": %s", i.Error)
		}
	}
	return b.String()
}

func printSnapshots(w io.Writer, infos []snapshot.Info) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tTABLE\tSTATE\tROWS READ\tSENT\tCHUNKS\tRATE\tETA\tORIGIN\tFILTER")
	for _, i := range infos {
		eta, rate := "-", "-"
		if i.ETASeconds != nil {
			eta = humanSeconds(*i.ETASeconds)
		}
		if i.RowsPerSecond > 0 {
			rate = thousands(int64(i.RowsPerSecond)) + "/s"
		}
		filter := i.Where
		if i.Observer != "" {
			filter = strings.TrimSpace(filter + " → " + i.Observer)
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s / ~%s\t%s\t%d\t%s\t%s\t%s\t%s\n", i.ID, i.Table, i.State, thousands(i.RowsRead), thousands(i.RowsEstimate),
			thousands(i.RowsSent), i.Chunks, rate, eta, i.Origin, filter)
		if i.Error != "" {
			fmt.Fprintf(tw, "\t  error: %s\n", i.Error)
		}
	}
	tw.Flush()
}

// nouns formats "1 row", "2 rows", "1,000 rows".
func nouns(n int64, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return thousands(n) + " " + word + "s"
}

// thousands formats n with thousands separators: 1,234,567.
func thousands(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}
