package decoder

import (
	"time"

	"github.com/fraiseql/fraiseql-observers/lsn"
)

// Begin is the message that starts a transaction. Transactions arrive whole and in
// commit order, so FinalLSN is already the LSN of the transaction's commit record.
type Begin struct {
	FinalLSN   lsn.LSN
	CommitTime time.Time
	Xid        uint32
}

// Kind returns KindBegin.
func (*Begin) Kind() Kind { return KindBegin }

func parseBegin(r *reader) Begin {
	var m Begin
	m.FinalLSN = r.lsn("final LSN")
	m.CommitTime = r.time("commit time")
	m.Xid = r.uint32("xid")
	r.end()
	return m
}
