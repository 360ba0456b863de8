package cdc

import (
	"context"
	"errors"
	"fmt"

	"github.com/fraiseql/fraiseql-observers/decoder"
	"github.com/fraiseql/fraiseql-observers/lsn"
)

// Poison is a change that cannot be turned into an event: its values exceed
// source.max_event_bytes, or hold text that is not valid UTF-8 (a SQL_ASCII database),
// or its key was not sent. It carries no row values.
type Poison struct {
	ID     lsn.Position // the id the event would have had
	LSN    lsn.LSN
	Schema string
	Table  string
	Reason string // too_large, invalid_value
	Err    error
}

// Quarantine stores poison changes durably (the dead-letter queue). Put returns nil
// only once the change is recorded; until then the stream does not go past it.
type Quarantine interface {
	Quarantine(ctx context.Context, p Poison) error
}

// poisonOf recognises the decoder errors that concern one change only.
func poisonOf(err error) (Poison, bool) {
	var tl *decoder.TooLargeError
	if errors.As(err, &tl) {
		return Poison{ID: tl.ID, LSN: tl.LSN, Schema: tl.Schema, Table: tl.Table, Reason: "too_large", Err: err}, true
	}
	var ve *decoder.ValueError
	if errors.As(err, &ve) {
		return Poison{ID: ve.ID, LSN: ve.LSN, Schema: ve.Schema, Table: ve.Table, Reason: "invalid_value", Err: err}, true
	}
	return Poison{}, false
}

// quarantine parks a poison change, or logs and skips it when there is no quarantine
// (the DLQ is disabled).
func (s *Session) quarantine(ctx context.Context, p Poison) error {
	s.m.poison.Inc()
	if s.opts.Quarantine == nil {
		s.log.Error().Str("event_id", p.ID.String()).Str("table", p.Schema+"."+p.Table).Str("reason", p.Reason).Err(p.Err).
			Msg("change cannot be delivered and the DLQ is disabled: skipped")
		return nil
	}
	if err := s.opts.Quarantine.Quarantine(ctx, p); err != nil {
		return fmt.Errorf("park change %s in the DLQ: %w", p.ID, err)
	}
	s.log.Warn().Str("event_id", p.ID.String()).Str("table", p.Schema+"."+p.Table).Str("reason", p.Reason).Err(p.Err).
		Msg("change cannot be delivered: parked in the DLQ")
	return nil
}
