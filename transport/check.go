package transport

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
)

// StreamCheck is what CheckStream found.
type StreamCheck struct {
	// Exists reports whether the stream exists; the fields below are zero otherwise.
	Exists    bool
	Messages  uint64
	Consumers int
	Replicas  int
	// Bucket reports whether the ownership bucket exists.
	Bucket bool
}

// CheckStream looks up the stream and the ownership bucket without creating or
// changing anything (validate-config --detailed) and checks an existing stream as
// EnsureStream does: subjects exactly <prefix>.*, work-queue retention, a duplicate
// window at least the configured one, the configured partition count; and an
// existing ownership bucket's TTL (lease_ttl), as EnsureStream does. A stream
// that does not fit is a *sinks.KeyError naming the key concerned; a missing one is
// not an error (the reader creates it).
func (c *Client) CheckStream(ctx context.Context) (StreamCheck, error) {
	var out StreamCheck
	ctx, cancel := c.timeout(ctx)
	defer cancel()
	st, err := c.js.Stream(ctx, c.cfg.Stream)
	switch {
	case errors.Is(err, jetstream.ErrStreamNotFound):
		return out, nil
	case err != nil:
		return out, fmt.Errorf("look up stream %q: %w", c.cfg.Stream, err)
	}
	info := st.CachedInfo()
	out.Exists, out.Messages, out.Consumers, out.Replicas = true, info.State.Msgs, info.State.Consumers, info.Config.Replicas
	if err := c.checkStream(info.Config); err != nil {
		return out, err
	}
	kv, err := c.js.KeyValue(ctx, c.OwnersBucket())
	switch {
	case errors.Is(err, jetstream.ErrBucketNotFound):
		return out, nil
	case err != nil:
		return out, fmt.Errorf("ownership bucket %q: %w", c.OwnersBucket(), err)
	}
	out.Bucket = true
	status, err := kv.Status(ctx)
	if err != nil {
		return out, fmt.Errorf("ownership bucket %q: %w", c.OwnersBucket(), err)
	}
	if status.TTL() != c.cfg.LeaseTTL {
		return out, keyErr("lease_ttl", fmt.Errorf("bucket %q has a TTL of %s, not %s: the executors refuse to start", c.OwnersBucket(), status.TTL(), c.cfg.LeaseTTL))
	}
	return out, nil
}
