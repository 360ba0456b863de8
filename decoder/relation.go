package decoder

// Column describes one column of a Relation message.
type Column struct {
	Name    string
	TypeOID uint32
	TypeMod int32
	Key     bool // part of the replica identity key (every column under REPLICA IDENTITY FULL)
}

// Relation is the descriptor of a published table as sent in a Relation message. A
// Relation is immutable: a new Relation message for the same OID makes a new value.
type Relation struct {
	ID              uint32
	Namespace       string
	Name            string
	ReplicaIdentity byte // 'd' default, 'n' nothing, 'f' full, 'i' index
	Columns         []Column
	// Names holds the column names in order; rows decoded with this relation share it.
	Names []string
}
