package decoder

// valueKind says how the text of a value becomes JSON.
type valueKind uint8

const (
	kindString      valueKind = iota // JSON string of the text (also every unknown type)
	kindNumber                       // JSON number when the text is one, else a string (NaN, Infinity)
	kindBool                         // true / false
	kindJSON                         // embedded JSON (json, jsonb)
	kindBytea                        // base64 string
	kindTimestamp                    // ISO 8601 without offset
	kindTimestampTZ                  // ISO 8601 with offset Z or ±hh:mm
	kindTimeTZ                       // time with offset Z or ±hh:mm
	kindArray                        // JSON array of elem
)

// typeInfo is what the decoder knows about one type OID.
type typeInfo struct {
	oid  uint32
	name string // pg_catalog name, "" for types learnt only from Type messages
	kind valueKind
	elem valueKind // element kind for kindArray
	// elemOID is the element type of an array (for binary decoding and naming).
	elemOID uint32
}

// builtin lists the built-in types this decoder decodes, with their array types. The
// OIDs are fixed by PostgreSQL (src/include/catalog/pg_type.dat) and checked against a
// live server by TestBuiltinTypeOIDs. Types not listed are passed as their text.
var builtin = [...]struct {
	oid, array uint32
	name       string
	kind       valueKind
}{
	{16, 1000, "bool", kindBool},
	{17, 1001, "bytea", kindBytea},
	{18, 1002, "char", kindString},
	{19, 1003, "name", kindString},
	{20, 1016, "int8", kindNumber},
	{21, 1005, "int2", kindNumber},
	{23, 1007, "int4", kindNumber},
	{25, 1009, "text", kindString},
	{26, 1028, "oid", kindNumber},
	{114, 199, "json", kindJSON},
	{142, 143, "xml", kindString},
	{650, 651, "cidr", kindString},
	{700, 1021, "float4", kindNumber},
	{701, 1022, "float8", kindNumber},
	{774, 775, "macaddr8", kindString},
	{790, 791, "money", kindString},
	{829, 1040, "macaddr", kindString},
	{869, 1041, "inet", kindString},
	{1042, 1014, "bpchar", kindString},
	{1043, 1015, "varchar", kindString},
	{1082, 1182, "date", kindString},
	{1083, 1183, "time", kindString},
	{1114, 1115, "timestamp", kindTimestamp},
	{1184, 1185, "timestamptz", kindTimestampTZ},
	{1186, 1187, "interval", kindString},
	{1266, 1270, "timetz", kindTimeTZ},
	{1560, 1561, "bit", kindString},
	{1562, 1563, "varbit", kindString},
	{1700, 1231, "numeric", kindNumber},
	{2950, 2951, "uuid", kindString},
	{3802, 3807, "jsonb", kindJSON},
}

var builtinTypes = func() map[uint32]typeInfo {
	m := make(map[uint32]typeInfo, 2*len(builtin))
	for _, b := range builtin {
		m[b.oid] = typeInfo{oid: b.oid, name: b.name, kind: b.kind}
		m[b.array] = typeInfo{oid: b.array, name: "_" + b.name, kind: kindArray, elem: b.kind, elemOID: b.oid}
	}
	return m
}()

// lookupType returns how values of type oid are decoded; unknown OIDs decode as text.
func lookupType(oid uint32) typeInfo {
	if t, ok := builtinTypes[oid]; ok {
		return t
	}
	return typeInfo{oid: oid, kind: kindString}
}
