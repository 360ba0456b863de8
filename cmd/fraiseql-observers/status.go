package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/fraiseql/fraiseql-observers/configs"
	"github.com/fraiseql/fraiseql-observers/internal/words"
	"github.com/fraiseql/fraiseql-observers/service"
)

func newStatusCmd(g *globals) *cobra.Command {
	var detailed bool
	c := &cobra.Command{
		Use:   "status [--detailed]",
		Short: "Show the leader, the slot, lag, checkpoints and the DLQ",
		Long: `Show which instance streams the slot ("Leader: listener-1 (1/1 healthy)"), the slot's state,
replication lag in bytes and seconds, the age of each action's checkpoint and the number of
pending DLQ items. It asks the running service's admin endpoint; when that does not answer it
reads the same state from PostgreSQL (registry, checkpoints, DLQ, pg_replication_slots) and
says so. --detailed adds every listener, the stream positions, the slot's wal_status and
safe_wal_size with an estimate of the time left before PostgreSQL would invalidate the slot
at the current WAL rate, and the WAL held by the replay window.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runStatus(cmd.Context(), g, detailed) },
	}
	c.Flags().BoolVarP(&detailed, "detailed", "d", false, "show listeners, positions, slot WAL safety and the replay window")
	return c
}

func runStatus(ctx context.Context, g *globals, detailed bool) error {
	asJSON, err := g.json()
	if err != nil {
		return err
	}
	cfg, err := g.loadConfig()
	if err != nil {
		return err
	}
	var doc service.StatusDoc
	note := ""
	client, err := g.newAdminClient(cfg)
	var unset *configs.Errors
	if errors.As(err, &unset) && cfg.Need("admin.listen", "admin.tls_ca_file") == nil {
		// Only the token's variable is missing: read the state from PostgreSQL,
		// which needs only the DSN.
		err = &codeError{code: exitUnavailable, err: err}
		note = unset.List[0].Msg + " (the admin endpoint needs its token): showing state from PostgreSQL"
	}
	if err == nil {
		err = client.do(ctx, "GET", "/status", nil, &doc)
		if err == nil {
			return printStatus(g, doc, asJSON, detailed, client.base)
		}
		var ue *unreachableError
		if !errors.As(err, &ue) {
			return serviceErr(err)
		}
		note = err.Error() + ": showing state from PostgreSQL"
	} else {
		var ce *codeError
		if !errors.As(err, &ce) || ce.code != exitUnavailable {
			return err
		}
		if note == "" {
			note = "service admin endpoint disabled (admin.listen is empty): showing state from PostgreSQL"
		}
	}
	pool, err := statePool(ctx, cfg)
	if err != nil {
		return fmt.Errorf("%s; and PostgreSQL cannot be read either: %w", strings.TrimSuffix(note, ": showing state from PostgreSQL"), err)
	}
	defer pool.Close()
	doc, h, err := service.CollectStatus(ctx, pool, cfg, 0)
	if err != nil {
		return err
	}
	if detailed {
		// Two readings a second apart give the current WAL rate.
		if err := service.MeasureWALRate(ctx, pool, cfg, &doc, h, time.Second); err != nil {
			return err
		}
	}
	doc.Source, doc.Note = "postgres", note
	return printStatus(g, doc, asJSON, detailed, "")
}

func printStatus(g *globals, doc service.StatusDoc, asJSON, detailed bool, from string) error {
	if asJSON {
		return g.printJSON(doc)
	}
	termSafe(&doc)
	w := g.stdout
	if doc.Note != "" {
		fmt.Fprintln(w, doc.Note)
	} else {
		fmt.Fprintf(w, "Observer status from the running service at %s (version %s)\n", from, doc.Version)
	}
	fmt.Fprintln(w, doc.Leader.Line())
	if doc.Role == "standby" {
		fmt.Fprintf(w, "This instance (%s) is a %s\n", doc.ListenerID, doc.RoleDetail)
	} else if doc.Role != "" && doc.Stream == nil && doc.RoleDetail != "" {
		fmt.Fprintf(w, "This instance (%s): %s\n", doc.ListenerID, doc.RoleDetail)
	}
	sl := doc.SlotHealth
	switch {
	case !sl.Exists:
		fmt.Fprintf(w, "Slot: %s does not exist\n", doc.Slot)
	default:
		active := "inactive (nobody streams it)"
		if sl.Active {
			active = fmt.Sprintf("active (pid %d)", sl.ActivePID)
		}
		fmt.Fprintf(w, "Slot: %s, publication %s: %s, wal_status %s\n", doc.Slot, doc.Publication, active, sl.WALStatus)
	}
	if st := doc.Stream; st != nil {
		fmt.Fprintf(w, "Lag: %s, %s (settled %s, server WAL %s)\n", humanBytes(float64(st.LagBytes)), humanSeconds(st.LagSeconds),
			st.SettledLSN, sl.CurrentWALLSN)
		if !st.Ready {
			fmt.Fprintf(w, "Not ready: %s\n", st.NotReadyReason)
		}
	} else if sl.Exists {
		fmt.Fprintf(w, "Lag: %s behind the slot's confirmed_flush_lsn %s (server WAL %s); lag in seconds needs the running service\n",
			humanBytes(float64(sl.ConfirmedLagBytes)), sl.ConfirmedFlushLSN, sl.CurrentWALLSN)
	}
	printCheckpoints(w, doc, detailed)
	if doc.DLQ.Enabled {
		fmt.Fprintf(w, "DLQ: %s\n", words.Count(int(doc.DLQ.Pending), "pending item", "pending items"))
	} else {
		fmt.Fprintf(w, "DLQ: disabled (%s)\n", words.Count(int(doc.DLQ.Pending), "pending item", "pending items"))
	}
	for _, sn := range doc.Snapshots {
		fmt.Fprintln(w, "Snapshot "+snapshotLine(sn))
	}
	if doc.Transport != nil {
		printTransport(w, doc.Transport, detailed)
	}
	if f := doc.Failover; f.Enabled {
		if f.LeaseHolder != "" && f.LeaseExpires != nil {
			fmt.Fprintf(w, "Failover: lease held by %s (epoch %d) until %s (lease %s)\n", f.LeaseHolder, f.LeaseEpoch,
				f.LeaseExpires.UTC().Format(time.RFC3339), f.LeaseDuration)
		} else {
			fmt.Fprintf(w, "Failover: enabled, no lease taken yet (lease %s)\n", f.LeaseDuration)
		}
	}
	if detailed {
		printDetails(w, doc)
	}
	return nil
}

func printCheckpoints(w io.Writer, doc service.StatusDoc, detailed bool) {
	var disabled *service.CheckpointDoc
	for i, c := range doc.Checkpoints {
		if c.Action == "*" && c.DisabledAt != nil {
			disabled = &doc.Checkpoints[i]
		}
	}
	// Without checkpoints the slot's confirmed position is the service's: the rows
	// left from before are no position, and their ages mean nothing.
	stale := disabled != nil || !doc.CheckpointsEnabled
	switch {
	case len(doc.Checkpoints) == 0 && !doc.CheckpointsEnabled:
		fmt.Fprintln(w, "Checkpoints: disabled (checkpoints.enabled: false): the slot's confirmed_flush_lsn is the service's position")
		return
	case len(doc.Checkpoints) == 0:
		fmt.Fprintln(w, "Checkpoints: none stored")
		return
	case disabled != nil:
		fmt.Fprintf(w, "Checkpoints: disabled since %s (by %s): the slot's confirmed_flush_lsn is the service's position; stored before:\n",
			disabled.DisabledAt.UTC().Format(time.RFC3339), disabled.ListenerID)
	case stale:
		fmt.Fprintln(w, "Checkpoints: disabled (checkpoints.enabled: false): the slot's confirmed_flush_lsn is the service's position; stored before:")
	default:
		fmt.Fprintln(w, "Checkpoints:")
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, c := range doc.Checkpoints {
		name := c.Action
		if name == "*" {
			name = "* (slot)"
		}
		if stale {
			fmt.Fprintf(tw, "  %s\t%s\twritten %s\n", name, c.Position, c.UpdatedAt.UTC().Format(time.RFC3339))
			continue
		}
		if detailed {
			fmt.Fprintf(tw, "  %s\t%s\tage %s\twritten by %s\n", name, c.Position, humanSeconds(c.AgeSeconds), c.ListenerID)
		} else {
			fmt.Fprintf(tw, "  %s\tage %s\n", name, humanSeconds(c.AgeSeconds))
		}
	}
	tw.Flush()
}

func printDetails(w io.Writer, doc service.StatusDoc) {
	fmt.Fprintln(w, "Listeners:")
	if len(doc.Listeners) == 0 {
		fmt.Fprintln(w, "  none registered")
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, l := range doc.Listeners {
		health := "unhealthy"
		if l.Healthy {
			health = "healthy"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\thost %s pid %d\tepoch %d\theartbeat %s ago\tversion %s\n", l.ListenerID, l.State, health,
			l.Host, l.PID, l.Epoch, humanSeconds(l.HeartbeatAgeSeconds), l.Version)
	}
	tw.Flush()
	if st := doc.Stream; st != nil {
		fmt.Fprintln(w, "Stream:")
		fmt.Fprintf(w, "  state %s, received %s, settled %s, confirmed %s, server WAL end %s\n",
			st.State, st.ReceivedLSN, st.SettledLSN, st.ConfirmedLSN, st.ServerWALEnd)
		last := "none yet"
		if st.LastCommitTime != nil {
			last = *st.LastCommitTime
		}
		fmt.Fprintf(w, "  reconnects %d, in flight %s, last commit received %s\n", st.Reconnects, humanBytes(float64(st.InFlightBytes)), last)
		if st.LastError != "" {
			fmt.Fprintf(w, "  last error: %s\n", st.LastError)
		}
	}
	sl := doc.SlotHealth
	if !sl.Exists {
		return
	}
	fmt.Fprintln(w, "Slot WAL:")
	fmt.Fprintf(w, "  restart_lsn %s, confirmed_flush_lsn %s, current WAL %s\n", sl.RestartLSN, sl.ConfirmedFlushLSN, sl.CurrentWALLSN)
	fmt.Fprintf(w, "  retained %s on the server; %s behind confirmed_flush_lsn\n", humanBytes(float64(sl.RetainedBytes)), humanBytes(float64(sl.ConfirmedLagBytes)))
	rate := "unknown"
	if sl.WALRateKnown {
		rate = humanBytes(sl.WALRate) + "/s"
	}
	switch {
	case sl.SafeWALSizeBytes == nil:
		fmt.Fprintf(w, "  wal_status %s, safe_wal_size unlimited (max_slot_wal_keep_size = -1): PostgreSQL never invalidates the slot, its disk may fill instead; WAL rate %s\n", sl.WALStatus, rate)
	case sl.TimeToInvalidate != nil:
		fmt.Fprintf(w, "  wal_status %s, safe_wal_size %s: at the current WAL rate (%s) the slot would be invalidated in about %s if nothing were confirmed\n",
			sl.WALStatus, humanBytes(float64(*sl.SafeWALSizeBytes)), rate, humanSeconds(*sl.TimeToInvalidate))
	default:
		fmt.Fprintf(w, "  wal_status %s, safe_wal_size %s; WAL rate %s: no invalidation expected at this rate\n", sl.WALStatus, humanBytes(float64(*sl.SafeWALSizeBytes)), rate)
	}
	if doc.Replay.Configured == "0" {
		fmt.Fprintln(w, "Replay window: off (replay reaches back to confirmed_flush_lsn only)")
	} else {
		fmt.Fprintf(w, "Replay window: %s, holding %s of WAL on the server\n", doc.Replay.Configured, humanBytes(float64(doc.Replay.HeldBytes)))
	}
}

// printTransport prints the nats transport: this instance's side of it, the live
// executors and, per partition, its owner and backlog (every partition with
// --detailed, otherwise a summary).
func printTransport(w io.Writer, t *service.TransportDoc, detailed bool) {
	conn := "connected"
	if !t.Connected {
		conn = "NATS unavailable"
	}
	fmt.Fprintf(w, "Transport: nats, stream %s, role %s, %s\n", t.Stream, t.Role, conn)
	if r := t.Reader; r != nil {
		state := "publishing"
		if !r.Available {
			state = "NATS unavailable: holding the slot"
		}
		fmt.Fprintf(w, "  Reader: %s, %d awaiting JetStream's ack, stored up to %s\n", state, r.Outstanding, orDash(r.AckedID))
	}
	if e := t.Executor; e != nil {
		fmt.Fprintf(w, "  Executor %s: owns partitions %v\n", e.ID, e.Owned)
	}
	if t.Error != "" {
		fmt.Fprintf(w, "  Partitions unknown: %s\n", t.Error)
		return
	}
	owned, pending, ackPending := 0, uint64(0), 0
	for _, p := range t.Partitions {
		if p.Owner != "" {
			owned++
		}
		pending += p.Pending
		ackPending += p.AckPending
	}
	fmt.Fprintf(w, "  Executors: %d live %v; %d/%d partitions owned; backlog %d pending, %d awaiting ack\n",
		len(t.Executors), t.Executors, owned, len(t.Partitions), pending, ackPending)
	if !detailed {
		return
	}
	for _, p := range t.Partitions {
		fmt.Fprintf(w, "    partition %d: owner %s, %d pending, %d awaiting ack\n", p.Partition, orDash(p.Owner), p.Pending, p.AckPending)
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
