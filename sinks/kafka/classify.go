package kafka

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/fraiseql/fraiseql-observers/sinks"
)

// Error classes of this sink (besides template, invalid_topic and too_large from
// record building).
const (
	classTooLarge      = "too_large"       // the record alone is over the limit: permanent
	classTooLargeBatch = "too_large_batch" // a batch holding it was over the topic's limit: transient
	classUnknownTopic  = "unknown_topic"   // the topic does not exist (yet): transient
	classAuth          = "auth"            // authentication or authorization refused: permanent
	classInvalidRecord = "invalid_record"  // the broker refuses this record (e.g. compacted topic rules): permanent
	classTimeout       = "timeout"         // no acknowledgement within timeout: transient
	classNetwork       = "network"         // connection trouble: transient
	classClosed        = "closed"          // the sink is closing: transient
)

// permanentCodes are broker errors that no retry of the same record fixes.
var permanentCodes = map[*kerr.Error]string{
	kerr.InvalidTopicException:              "invalid_topic",
	kerr.TopicAuthorizationFailed:           classAuth,
	kerr.ClusterAuthorizationFailed:         classAuth,
	kerr.SaslAuthenticationFailed:           classAuth,
	kerr.TransactionalIDAuthorizationFailed: classAuth,
	kerr.InvalidRecord:                      classInvalidRecord,
	kerr.PolicyViolation:                    classInvalidRecord,
}

// classify turns a produce error for r into a sinks.Error. ctx is the delivery's
// context (not the one bounded by the produce timeout): when it is done the
// pipeline is stopping and its error is returned as is.
func (s *Sink) classify(ctx context.Context, adm *kadm.Client, r *kgo.Record, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("produce: %w", ctx.Err())
	}
	var ke *kerr.Error
	switch {
	case errors.Is(err, kerr.MessageTooLarge):
		return s.tooLarge(ctx, adm, r, err)
	case errors.Is(err, kerr.UnknownTopicOrPartition), errors.Is(err, kerr.UnknownTopicID):
		return sinks.Transient(classUnknownTopic,
			fmt.Errorf("produce: topic does not exist (create it, or let the broker auto-create topics): %w", err), 0)
	case errors.As(err, &ke) && permanentCodes[ke] != "":
		return sinks.Permanent(permanentCodes[ke], fmt.Errorf("produce: %w", err))
	case errors.As(err, &ke):
		// Retriable broker errors (NOT_LEADER_OR_FOLLOWER, REQUEST_TIMED_OUT,
		// NOT_ENOUGH_REPLICAS, ...) and any other code we do not know to be final.
		return sinks.Transient("kafka_"+strings.ToLower(ke.Message), fmt.Errorf("produce: %w", err), 0)
	case errors.Is(err, kgo.ErrRecordTimeout), errors.Is(err, context.DeadlineExceeded),
		errors.Is(err, context.Canceled), errors.Is(err, kgo.ErrRecordRetries):
		// Canceled: franz-go fails a whole partition batch with the context of its
		// first record, which may belong to another delivery that timed out.
		return sinks.Transient(classTimeout, fmt.Errorf("produce: no acknowledgement within %v: %w", s.cfg.Timeout, err), 0)
	case errors.Is(err, kgo.ErrClientClosed):
		return sinks.Transient(classClosed, fmt.Errorf("produce: %w", err), 0)
	}
	var ne net.Error
	if errors.As(err, &ne) {
		return sinks.Transient(classNetwork, fmt.Errorf("produce: %w", err), 0)
	}
	return sinks.Transient("kafka", fmt.Errorf("produce: %w", err), 0)
}

// tooLarge classifies MESSAGE_TOO_LARGE. franz-go reports it before sending for a
// record that alone exceeds ProducerBatchMaxBytes; a broker reports it for a whole
// record batch, which may hold other events' records. The record is at fault when
// it alone is over the topic's max.message.bytes (read once from the broker);
// otherwise the batch was, because max_message_bytes is set above the topic's
// limit, and a retry (in another batch) can succeed.
func (s *Sink) tooLarge(ctx context.Context, adm *kadm.Client, r *kgo.Record, err error) error {
	size := recordSize(r)
	if size > int(s.cfg.MaxMessageBytes) {
		return sinks.Permanent(classTooLarge, fmt.Errorf("produce: record of %d bytes over max_message_bytes: %w", size, err))
	}
	limit, lerr := s.topicLimit(ctx, adm, r.Topic)
	if lerr != nil {
		// Without the topic's limit we cannot tell; a retry loop on a record that can
		// never fit is worse than a dead letter that can be retried by hand.
		return sinks.Permanent(classTooLarge, fmt.Errorf("produce: %w (topic limit unknown: %w)", err, lerr))
	}
	if size > limit {
		return sinks.Permanent(classTooLarge, fmt.Errorf("produce: record of %d bytes over the topic's max.message.bytes (%d): %w", size, limit, err))
	}
	return sinks.Transient(classTooLargeBatch, fmt.Errorf(
		"produce: a record batch was over the topic's max.message.bytes (%d); set max_message_bytes to at most that: %w", limit, err), 0)
}

// topicLimit returns the topic's max.message.bytes, asking the broker once per topic.
func (s *Sink) topicLimit(ctx context.Context, adm *kadm.Client, topic string) (int, error) {
	s.limitsMu.Lock()
	n, ok := s.limits[topic]
	s.limitsMu.Unlock()
	if ok {
		return n, nil
	}
	ctx, cancel := context.WithTimeout(ctx, min(s.cfg.Timeout, 5*time.Second))
	defer cancel()
	rcs, err := adm.DescribeTopicConfigs(ctx, topic)
	if err != nil {
		return 0, fmt.Errorf("describe topic configs: %w", err)
	}
	rc, err := rcs.On(topic, nil)
	if err != nil {
		return 0, fmt.Errorf("describe topic configs: %w", err)
	}
	if rc.Err != nil {
		return 0, fmt.Errorf("describe topic configs: %w", rc.Err)
	}
	for _, c := range rc.Configs {
		if c.Key == "max.message.bytes" {
			n, err := strconv.Atoi(c.MaybeValue())
			if err != nil {
				return 0, fmt.Errorf("max.message.bytes: %w", err)
			}
			s.limitsMu.Lock()
			s.limits[topic] = n
			s.limitsMu.Unlock()
			return n, nil
		}
	}
	return 0, errors.New("max.message.bytes not reported")
}
