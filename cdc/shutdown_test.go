package cdc

import (
	"context"
	"errors"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/rs/zerolog"

	"github.com/fraiseql/fraiseql-observers/decoder"
	"github.com/fraiseql/fraiseql-observers/internal/pgtest"
	"github.com/fraiseql/fraiseql-observers/lsn"
)

// ownServer starts a PostgreSQL server for one test, which may stop and start it or
// need settings of its own.
func ownServer(t *testing.T, settings map[string]string) *pgtest.Server {
	t.Helper()
	srv, err := pgtest.Start(pgtest.Options{Settings: settings})
	if errors.Is(err, pgtest.ErrNoPostgres) && os.Getenv("CI") != "true" {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Remove() })
	return srv
}

// settleAll settles every event at once: a pipeline with instant sinks.
type settleAll struct {
	wm    *lsn.Watermark[lsn.LSN]
	ready chan struct{}
}

func (c *settleAll) Push(_ []*decoder.Event, tickets []lsn.Ticket) {
	for _, t := range tickets {
		c.wm.Ack(t)
	}
}
func (c *settleAll) Full() bool             { return false }
func (c *settleAll) Ready() <-chan struct{} { return c.ready }

// fixedConfirmer never lets the session confirm past one position, as when the
// checkpoint store cannot be written or a replay window holds the slot back.
type fixedConfirmer struct{ at lsn.LSN }

func (c fixedConfirmer) Durable() lsn.LSN { return c.at }

// TestSessionLetsPostgresStop stops PostgreSQL in fast and in smart mode while a
// session streams and confirms nothing of what it received. A walsender in a fast or
// smart shutdown waits until its client confirms everything it was sent, so a session
// that only answered keepalives would hold the shutdown up forever (and a smart one
// also waits for every other session to end). PostgreSQL must stop within 10 s; the
// session must not give up, and streams again once the server is back.
func TestSessionLetsPostgresStop(t *testing.T) {
	srv := ownServer(t, nil)
	for _, mode := range []string{"fast", "smart"} {
		t.Run(mode, func(t *testing.T) {
			db := pgtest.NewDBOn(t, srv)
			db.Exec(`CREATE TABLE t (id int PRIMARY KEY); CREATE PUBLICATION pub FOR TABLE t`)
			start, err := lsn.Parse(db.CreateSlot("slot"))
			if err != nil {
				t.Fatal(err)
			}
			cc, err := pgx.ParseConfig(db.DSN())
			if err != nil {
				t.Fatal(err)
			}
			// The owner's other connection, as the service's pool holds them: a smart
			// shutdown waits for it to end, and the session tells when to close it.
			other, err := pgx.ConnectConfig(context.Background(), cc)
			if err != nil {
				t.Fatal(err)
			}
			defer other.Close(context.Background())
			// The session's queries leave idle connections in the owner's pool, which
			// the owner closes when told, as the service does.
			pool := pgtest.Pool(t, db.DSN())
			wm := lsn.NewWatermark(lsn.CompareLSNs)
			shutdowns := make(chan struct{}, 10)
			closeOther := sync.OnceFunc(func() { go other.Close(context.Background()) })
			sess, err := New(Options{DB: pool, ConnConfig: cc, Slot: "slot", Publication: "pub", StatusInterval: time.Second,
				ReconnectInitial: 100 * time.Millisecond, ReconnectMax: time.Second,
				OnServerShutdown: func() {
					shutdowns <- struct{}{}
					closeOther()
					go pool.Reset()
				},
				Logger: zerolog.New(zerolog.NewTestWriter(t))},
				wm, &settleAll{wm: wm, ready: make(chan struct{})}, fixedConfirmer{start})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- sess.Run(ctx) }()
			defer func() {
				cancel()
				if err := <-done; err != nil {
					t.Errorf("Run returned %v after cancel; want nil", err)
				}
			}()
			db.Exec(`INSERT INTO t SELECT generate_series(1, 500)`)
			waitUntil(t, "the inserted rows to arrive", func() bool { return sess.Status().ReceivedLSN > start })

			if err := srv.StopMode(mode, 10*time.Second); err != nil {
				srv.Kill()
				t.Fatalf("PostgreSQL did not stop within 10s in %s mode while the session streamed: %v", mode, err)
			}
			select {
			case err := <-done:
				t.Fatalf("Run returned while the server was down: %v", err)
			default:
			}
			if sess.Status().Connected {
				t.Fatalf("the session reports a connection while the server is down")
			}
			if len(shutdowns) == 0 {
				t.Fatalf("the session did not tell its owner that the server shuts down")
			}
			if err := srv.Start(); err != nil {
				t.Fatal(err)
			}
			waitUntil(t, "the session to stream again", func() bool { return sess.Status().Connected })
		})
	}
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
