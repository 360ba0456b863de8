package snapshot

import (
	"errors"
	"fmt"
)

// RequestError is a snapshot request that cannot be started as asked: an unknown or
// unpublished table, a table without a usable key, an invalid --where, an unknown
// observer. Nothing was started. Field names the part of the request at fault
// ("table", "where", "observer").
type RequestError struct {
	Field string
	Msg   string
}

func (e *RequestError) Error() string { return e.Msg }

// ErrNotFound is returned for a snapshot id this slot does not have.
var ErrNotFound = errors.New("no such snapshot")

// ConflictError reports a snapshot of the same table already pending or running.
type ConflictError struct {
	ID    int64
	Table string
}

func (e *ConflictError) Error() string {
	return fmt.Sprintf("snapshot %d of %s is already pending or running: wait for it or cancel it first", e.ID, e.Table)
}
