package decoder

import "github.com/fraiseql/fraiseql-observers/lsn"

// Origin is the message naming the replication origin of the current transaction
// (sent after Begin for changes that were themselves replicated from elsewhere).
type Origin struct {
	CommitLSN lsn.LSN // the commit LSN on the origin server
	Name      string
}

// Kind returns KindOrigin.
func (*Origin) Kind() Kind { return KindOrigin }

func parseOrigin(r *reader) Origin {
	var m Origin
	m.CommitLSN = r.lsn("origin commit LSN")
	m.Name = string(r.cstring("origin name"))
	r.end()
	return m
}
