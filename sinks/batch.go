package sinks

import "fmt"

// MaxBatchSize is the largest batch_size an action may have.
const MaxBatchSize = 10000

// Batch is embedded in the Config of an action type whose sink delivers several
// events in one call (it implements the pipeline's BatchSink): embedding it is how
// the type declares that it batches, and its key batch_size is the action's one
// batching knob. The pipeline hands each delivery call at most batch_size events
// of different rows, and never more than pipeline.batch_size.
type Batch struct {
	// BatchSize is the most events one delivery carries; 0 means the type's
	// default, which its Defaults sets (or, left at 0, pipeline.batch_size).
	BatchSize int `yaml:"batch_size"`
}

// Batcher is implemented by the Config of an action type that batches, through
// an embedded Batch.
type Batcher interface {
	// BatchLimit returns the configured batch_size (0: pipeline.batch_size).
	BatchLimit() int
}

// BatchLimit returns the configured batch_size (0: pipeline.batch_size).
func (b Batch) BatchLimit() int { return b.BatchSize }

// Check reports a batch_size outside 1–MaxBatchSize (0 is the default) as a
// *KeyError.
func (b Batch) Check() error {
	if b.BatchSize < 0 || b.BatchSize > MaxBatchSize {
		return KeyErrorf("batch_size", fmt.Errorf("must be between 1 and %d, got %d", MaxBatchSize, b.BatchSize))
	}
	return nil
}
