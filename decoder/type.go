package decoder

// Type is the message describing a non-built-in data type (enum, domain, composite,
// extension type, ...) before a Relation message uses it.
type Type struct {
	ID        uint32
	Namespace string // empty for pg_catalog
	Name      string
}

// Kind returns KindType.
func (*Type) Kind() Kind { return KindType }

func parseType(r *reader) Type {
	var m Type
	m.ID = r.uint32("type OID")
	m.Namespace = string(r.cstring("type namespace"))
	m.Name = string(r.cstring("type name"))
	r.end()
	return m
}
