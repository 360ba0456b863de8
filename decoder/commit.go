package decoder

import (
	"time"

	"github.com/fraiseql/fraiseql-observers/lsn"
)

// Commit is the message that ends a transaction. CommitLSN equals the Begin's FinalLSN;
// EndLSN is the LSN just past the commit record, the position to confirm to the server
// once every event of the transaction is settled.
type Commit struct {
	Flags      uint8
	CommitLSN  lsn.LSN
	EndLSN     lsn.LSN
	CommitTime time.Time
}

// Kind returns KindCommit.
func (*Commit) Kind() Kind { return KindCommit }

func parseCommit(r *reader) Commit {
	var m Commit
	m.Flags = r.uint8("flags")
	m.CommitLSN = r.lsn("commit LSN")
	m.EndLSN = r.lsn("end LSN")
	m.CommitTime = r.time("commit time")
	r.end()
	return m
}
