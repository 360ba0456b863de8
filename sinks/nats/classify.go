package nats

import (
	"context"
	"errors"
	"strconv"

	natsio "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/fraiseql/fraiseql-observers/sinks"
)

// Classify turns an error of a publish into a sinks.Error that says whether a retry
// can help (the table is in docs/actions/nats.md). Context cancellation is returned
// as it is (the pipeline is stopping); nil stays nil.
func Classify(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, context.Canceled) {
		return err
	}
	var api *jetstream.APIError
	switch {
	case errors.Is(err, natsio.ErrMaxPayload):
		// Larger than the server's max_payload: no retry can shrink it.
		return sinks.Permanent("too_large", err)
	case errors.Is(err, natsio.ErrBadSubject), errors.Is(err, jetstream.ErrInvalidSubject):
		return sinks.Permanent("bad_subject", err)
	case errors.Is(err, jetstream.ErrNoStreamResponse), errors.Is(err, natsio.ErrNoResponders):
		// No stream captures the subject (or its leader is being elected): an
		// operator can create the stream, and the retries give them the time.
		return sinks.Transient("no_stream", err, 0)
	case errors.Is(err, jetstream.ErrAsyncPublishTimeout), errors.Is(err, context.DeadlineExceeded),
		errors.Is(err, natsio.ErrTimeout):
		// The message may be stored: the retry carries the same Nats-Msg-Id.
		return sinks.Transient("timeout", err, 0)
	case errors.Is(err, jetstream.ErrTooManyStalledMsgs):
		return sinks.Transient("backpressure", err, 0)
	case errors.Is(err, jetstream.ErrInvalidJSAck):
		// An answer that is no PubAck: garbage from the server or a proxy.
		return sinks.Transient("bad_ack", err, 0)
	case errors.As(err, &api):
		return classifyAPI(api, err)
	}
	// Closed, draining, reconnecting, disconnected, buffer full while reconnecting,
	// and socket errors: the connection heals (the client reconnects forever).
	return sinks.Transient("connection", err, 0)
}

// classifyAPI classifies a JetStream API error by its error code: the server's own
// 5xx-like codes (insufficient resources, store failed, cluster unavailable) heal;
// other codes (wrong last sequence, expected stream mismatch, ...) say the request
// will be refused again.
func classifyAPI(api *jetstream.APIError, err error) error {
	class := "js_" + strconv.Itoa(int(api.ErrorCode))
	if api.ErrorCode == jetstream.JSErrCodeStreamMessageExceedsMaximum {
		return sinks.Permanent("too_large", err)
	}
	if api.Code >= 500 || api.Code == 408 || api.Code == 429 {
		return sinks.Transient(class, err, 0)
	}
	return sinks.Permanent(class, err)
}
