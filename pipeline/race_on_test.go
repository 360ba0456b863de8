//go:build race

package pipeline_test

// raceEnabled: the race detector adds allocations of its own, so allocation counts
// are not pinned under it.
const raceEnabled = true
