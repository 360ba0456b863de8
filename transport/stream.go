package transport

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"time"

	natsio "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// Client is a connection to JetStream with the transport's configuration. It is
// safe for concurrent use.
type Client struct {
	cfg Config
	nc  *natsio.Conn
	js  jetstream.JetStream
	log zerolog.Logger
}

// Connect fills cfg's defaults, validates it (type must be nats) and connects. A
// server that cannot be reached yet is not an error: the client keeps trying, as it
// reconnects on its own when the connection drops (Connected reports the state);
// Close stops it. It does not touch the stream: call EnsureStream.
func Connect(cfg Config, log zerolog.Logger) (*Client, error) {
	cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Type != TypeNATS {
		return nil, keyErr("type", errors.New("the transport is not nats"))
	}
	// No reconnect buffer: a publish while disconnected fails at once instead of
	// being sent after the reconnect, behind publishes the reader already retried.
	nc, err := cfg.Connection.Dial(log, natsio.ReconnectBufSize(-1), natsio.RetryOnFailedConnect(true))
	if err != nil {
		return nil, err
	}
	js, err := jetstream.New(nc, jetstream.WithDefaultTimeout(cfg.Timeout),
		jetstream.WithPublishAsyncTimeout(cfg.Timeout), jetstream.WithPublishAsyncMaxPending(4*cfg.MaxPending))
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	return &Client{cfg: cfg, nc: nc, js: js, log: log}, nil
}

// Config returns the configuration with its defaults filled.
func (c *Client) Config() Config { return c.cfg }

// JetStream returns the JetStream context of the connection.
func (c *Client) JetStream() jetstream.JetStream { return c.js }

// Connected reports whether the connection to NATS is up.
func (c *Client) Connected() bool { return c.nc.IsConnected() }

// WaitConnected waits until the connection is up, for at most dial_timeout (or
// until ctx ends): an error says NATS could not be reached.
func (c *Client) WaitConnected(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.DialTimeout)
	defer cancel()
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for !c.nc.IsConnected() {
		select {
		case <-ctx.Done():
			if err := c.nc.LastError(); err != nil {
				return fmt.Errorf("cannot reach NATS (transport.url) within %s: %w", c.cfg.DialTimeout, err)
			}
			return fmt.Errorf("cannot reach NATS (transport.url) within %s", c.cfg.DialTimeout)
		case <-t.C:
		}
	}
	return nil
}

// Close closes the connection.
func (c *Client) Close() {
	c.js.CleanupPublisher()
	c.nc.Close()
}

// OwnersBucket returns the name of the KV bucket holding partition ownership.
func (c *Client) OwnersBucket() string { return c.cfg.Stream + "_owners" }

// description records the partition count in the stream (JetStream 2.9 has no
// stream metadata), so that readers and executors configured with another count
// are refused instead of splitting rows across partitions.
func (c *Client) description() string {
	return "fraiseql-observers events; partitions=" + strconv.Itoa(c.cfg.Partitions)
}

var partitionsRe = regexp.MustCompile(`partitions=(\d+)`)

// streamConfig is the stream the service creates: subjects <prefix>.*, work-queue
// retention (a message is removed once its partition's consumer acked it), discard
// new (a full stream refuses publishes, which stops the reader, rather than dropping
// events no executor has handled), file storage, the configured replicas and
// duplicate window.
func (c *Client) streamConfig() jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:        c.cfg.Stream,
		Description: c.description(),
		Subjects:    []string{c.cfg.SubjectPrefix + ".*"},
		Retention:   jetstream.WorkQueuePolicy,
		Discard:     jetstream.DiscardNew,
		Storage:     jetstream.FileStorage,
		Replicas:    c.cfg.Replicas,
		Duplicates:  c.cfg.DuplicateWindow,
	}
}

// EnsureStream creates the stream and the ownership bucket when they are missing
// and checks existing ones: the stream's subjects must be exactly <prefix>.*, its
// retention work-queue, its duplicate window at least the configured one, its
// partition count the configured one, and no limit may remove messages (max age,
// discard old, a per-subject limit without discard new per subject); the
// bucket's TTL must be lease_ttl.
func (c *Client) EnsureStream(ctx context.Context) (jetstream.Stream, error) {
	ctx, cancel := context.WithTimeout(ctx, 3*c.cfg.Timeout)
	defer cancel()
	st, err := c.js.Stream(ctx, c.cfg.Stream)
	switch {
	case errors.Is(err, jetstream.ErrStreamNotFound):
		st, err = c.js.CreateStream(ctx, c.streamConfig())
		if err != nil && !errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			return nil, fmt.Errorf("create stream %q: %w", c.cfg.Stream, err)
		}
		if err != nil { // created by another process meanwhile
			if st, err = c.js.Stream(ctx, c.cfg.Stream); err != nil {
				return nil, fmt.Errorf("look up stream %q: %w", c.cfg.Stream, err)
			}
		}
		c.log.Info().Str("stream", c.cfg.Stream).Int("replicas", c.cfg.Replicas).Msg("transport stream ready")
	case err != nil:
		return nil, fmt.Errorf("look up stream %q: %w", c.cfg.Stream, err)
	}
	if err := c.checkStream(st.CachedInfo().Config); err != nil {
		return nil, err
	}
	if _, err := c.ownersKV(ctx); err != nil {
		return nil, err
	}
	return st, nil
}

// checkStream compares an existing stream with what the transport needs.
func (c *Client) checkStream(sc jetstream.StreamConfig) error {
	want := c.cfg.SubjectPrefix + ".*"
	if len(sc.Subjects) != 1 || sc.Subjects[0] != want {
		return keyErr("stream", fmt.Errorf("stream %q has subjects %v; the transport needs exactly [%s] (subject_prefix)", sc.Name, sc.Subjects, want))
	}
	if sc.Retention != jetstream.WorkQueuePolicy {
		return keyErr("stream", fmt.Errorf("stream %q has %s retention; the transport needs WorkQueue", sc.Name, sc.Retention))
	}
	if sc.Duplicates < c.cfg.DuplicateWindow {
		return keyErr("duplicate_window", fmt.Errorf("stream %q has a duplicate window of %s, shorter than %s", sc.Name, sc.Duplicates, c.cfg.DuplicateWindow))
	}
	// Limits that remove messages no executor has handled would lose events whose
	// position the slot has already confirmed; limits that refuse publishes only
	// hold the reader back.
	switch {
	case sc.MaxAge > 0:
		return keyErr("stream", fmt.Errorf("stream %q removes messages older than %s (max_age): events no executor handled in time would be lost; the transport needs no max age", sc.Name, sc.MaxAge))
	case sc.Discard != jetstream.DiscardNew && (sc.MaxMsgs > 0 || sc.MaxBytes > 0):
		return keyErr("stream", fmt.Errorf("stream %q discards old messages when it reaches its limits: events no executor handled would be lost; the transport needs discard: new", sc.Name))
	case sc.MaxMsgsPerSubject > 0 && !sc.DiscardNewPerSubject:
		return keyErr("stream", fmt.Errorf("stream %q keeps at most %d messages per subject and discards the older ones: events no executor handled would be lost", sc.Name, sc.MaxMsgsPerSubject))
	}
	if m := partitionsRe.FindStringSubmatch(sc.Description); m != nil && m[1] != strconv.Itoa(c.cfg.Partitions) {
		return keyErr("partitions", fmt.Errorf("stream %q was created with %s partitions, not %d", sc.Name, m[1], c.cfg.Partitions))
	}
	return nil
}

// ownersKV creates or checks the ownership bucket: history 1, TTL lease_ttl, the
// stream's replicas.
func (c *Client) ownersKV(ctx context.Context) (jetstream.KeyValue, error) {
	kv, err := c.js.KeyValue(ctx, c.OwnersBucket())
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		kv, err = c.js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: c.OwnersBucket(),
			Description: "fraiseql-observers partition ownership", History: 1, TTL: c.cfg.LeaseTTL,
			Storage: jetstream.FileStorage, Replicas: c.cfg.Replicas})
		if errors.Is(err, jetstream.ErrBucketExists) {
			kv, err = c.js.KeyValue(ctx, c.OwnersBucket())
		}
	}
	if err != nil {
		return nil, fmt.Errorf("ownership bucket %q: %w", c.OwnersBucket(), err)
	}
	status, err := kv.Status(ctx)
	if err != nil {
		return nil, fmt.Errorf("ownership bucket %q: %w", c.OwnersBucket(), err)
	}
	if status.TTL() != c.cfg.LeaseTTL {
		return nil, keyErr("lease_ttl", fmt.Errorf("bucket %q has a TTL of %s, not %s", c.OwnersBucket(), status.TTL(), c.cfg.LeaseTTL))
	}
	return kv, nil
}

// timeout bounds one JetStream call.
func (c *Client) timeout(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, c.cfg.Timeout+time.Second)
}
