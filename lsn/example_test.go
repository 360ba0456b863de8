package lsn_test

import (
	"fmt"

	"github.com/fraiseql/fraiseql-observers/lsn"
)

// The replication session dispatches the position of each event as it hands the event
// on, and the commit's end LSN after the transaction's last event; actions acknowledge
// in any order. Only the position below which everything is acknowledged may be
// confirmed to PostgreSQL.
func ExampleWatermark() {
	wm := lsn.NewWatermark(lsn.CompareLSNs)
	wm.Reset(0x1000) // the position confirmed when the session started

	// A transaction committed at 0/2000 (its commit record ends at 0/2030) with two events.
	first := wm.Dispatch(0x2000)
	second := wm.Dispatch(0x2000)
	wm.Ack(wm.Dispatch(0x2030)) // the commit marker: nothing to deliver

	wm.Ack(second) // the second event settled first: nothing can be confirmed yet
	acked, _ := wm.Acked()
	fmt.Println("confirm", acked, "outstanding", wm.Outstanding())

	wm.Ack(first)
	acked, _ = wm.Acked()
	fmt.Println("confirm", acked, "outstanding", wm.Outstanding())

	// Idle: a keepalive reports WAL that holds nothing for us.
	fmt.Println("advanced", wm.Advance(0x3000))
	acked, _ = wm.Acked()
	fmt.Println("confirm", acked)
	// Output:
	// confirm 0/1000 outstanding 1
	// confirm 0/2030 outstanding 0
	// advanced true
	// confirm 0/3000
}
