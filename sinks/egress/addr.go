package egress

import (
	"net/netip"
	"strconv"
	"strings"
)

// Address classes that are blocked unless allow-listed. Each is a short, stable
// name used in errors.
const (
	ClassLoopback      = "loopback"        // 127.0.0.0/8, ::1
	ClassUnspecified   = "unspecified"     // 0.0.0.0/8 ("this network"), ::
	ClassPrivate       = "private"         // RFC 1918: 10/8, 172.16/12, 192.168/16
	ClassLinkLocal     = "link_local"      // 169.254/16 (cloud metadata), fe80::/10
	ClassCGNAT         = "cgnat"           // 100.64/10 (RFC 6598 shared address space)
	ClassUniqueLocal   = "unique_local"    // fc00::/7
	ClassSiteLocal     = "site_local"      // fec0::/10 (deprecated)
	ClassMulticast     = "multicast"       // 224/4, ff00::/8
	ClassReserved      = "reserved"        // 240/4 and broadcast, 192.0.0/24, 192.88.99/24, 100::/64, Teredo
	ClassDocumentation = "documentation"   // TEST-NET-1/2/3, 2001:db8::/32
	ClassBenchmarking  = "benchmarking"    // 198.18/15
	ClassIPv4Compat    = "ipv4_compatible" // ::/96 (deprecated IPv4-compatible IPv6)
	ClassNAT64Local    = "nat64_local"     // 64:ff9b:1::/48
)

type rangeClass struct {
	p     netip.Prefix
	class string
}

var blockedRanges = func() []rangeClass {
	rs := []struct{ cidr, class string }{
		{"0.0.0.0/8", ClassUnspecified},
		{"10.0.0.0/8", ClassPrivate},
		{"100.64.0.0/10", ClassCGNAT},
		{"127.0.0.0/8", ClassLoopback},
		{"169.254.0.0/16", ClassLinkLocal},
		{"172.16.0.0/12", ClassPrivate},
		{"192.0.0.0/24", ClassReserved},
		{"192.0.2.0/24", ClassDocumentation},
		{"192.88.99.0/24", ClassReserved},
		{"192.168.0.0/16", ClassPrivate},
		{"198.18.0.0/15", ClassBenchmarking},
		{"198.51.100.0/24", ClassDocumentation},
		{"203.0.113.0/24", ClassDocumentation},
		{"224.0.0.0/4", ClassMulticast},
		{"240.0.0.0/4", ClassReserved},
		{"::/128", ClassUnspecified},
		{"::1/128", ClassLoopback},
		{"::/96", ClassIPv4Compat},
		{"64:ff9b:1::/48", ClassNAT64Local},
		{"100::/64", ClassReserved},
		{"2001::/32", ClassReserved}, // Teredo: the client address inside is obfuscated
		{"2001:db8::/32", ClassDocumentation},
		{"fc00::/7", ClassUniqueLocal},
		{"fe80::/10", ClassLinkLocal},
		{"fec0::/10", ClassSiteLocal},
		{"ff00::/8", ClassMulticast},
	}
	out := make([]rangeClass, len(rs))
	for i, r := range rs {
		out[i] = rangeClass{netip.MustParsePrefix(r.cidr), r.class}
	}
	return out
}()

var (
	nat64WellKnown = netip.MustParsePrefix("64:ff9b::/96")
	sixToFour      = netip.MustParsePrefix("2002::/16")
)

// Classify says whether ip is in a range the guard blocks, and which. IPv6 forms
// that carry an IPv4 address (IPv4-mapped ::ffff:a.b.c.d, NAT64 64:ff9b::a.b.c.d,
// 6to4 2002:aabb:ccdd::) are classified by that IPv4 address; a zone is ignored.
// An invalid address is blocked as "invalid". Classify is safe for concurrent use.
func Classify(ip netip.Addr) (class string, blocked bool) {
	if !ip.IsValid() {
		return "invalid", true
	}
	ip = ip.WithZone("")
	if ip.Is4In6() {
		if c, b := Classify(ip.Unmap()); b {
			return c + " (IPv4-mapped)", true
		}
		return "", false
	}
	if ip.Is6() {
		a := ip.As16()
		switch {
		case nat64WellKnown.Contains(ip):
			if c, b := Classify(netip.AddrFrom4([4]byte(a[12:16]))); b {
				return c + " (NAT64)", true
			}
			return "", false
		case sixToFour.Contains(ip):
			if c, b := Classify(netip.AddrFrom4([4]byte(a[2:6]))); b {
				return c + " (6to4)", true
			}
			return "", false
		}
	}
	// The most specific range wins (::1 before ::/96).
	best, bits := "", -1
	for _, r := range blockedRanges {
		if r.p.Addr().Is4() == ip.Is4() && r.p.Contains(ip) && r.p.Bits() > bits {
			best, bits = r.class, r.p.Bits()
		}
	}
	return best, bits >= 0
}

// parseHost interprets the host part of a URL: an IP address (brackets and a
// trailing dot removed), or a name. Legacy numeric IPv4 forms that inet_aton and
// some resolvers accept ("2130706433", "0x7f000001", "0177.0.0.1", "127.1") are
// returned as the address they mean with numeric=true: they are never valid
// targets, because what they reach depends on the resolver.
func parseHost(host string) (ip netip.Addr, name string, numeric bool) {
	host = strings.TrimSuffix(strings.TrimSuffix(strings.TrimPrefix(host, "["), "]"), ".")
	if ip, err := netip.ParseAddr(host); err == nil {
		return ip, "", false
	}
	if ip, ok := parseLegacyIPv4(host); ok {
		return ip, "", true
	}
	return netip.Addr{}, strings.ToLower(host), false
}

// parseLegacyIPv4 parses the forms inet_aton accepts: one to four parts separated by
// dots, each decimal, octal (leading 0) or hexadecimal (0x); the last part fills the
// remaining bytes.
func parseLegacyIPv4(s string) (netip.Addr, bool) {
	parts := strings.Split(s, ".")
	if len(parts) > 4 || s == "" {
		return netip.Addr{}, false
	}
	vals := make([]uint64, len(parts))
	for i, p := range parts {
		base := 10
		switch {
		case p == "":
			return netip.Addr{}, false
		case len(p) > 1 && (p[:2] == "0x" || p[:2] == "0X"):
			base, p = 16, p[2:]
			if p == "" {
				vals[i] = 0
				continue
			}
		case len(p) > 1 && p[0] == '0':
			base, p = 8, p[1:]
		}
		v, err := strconv.ParseUint(p, base, 32)
		if err != nil {
			return netip.Addr{}, false
		}
		vals[i] = v
	}
	var n uint64
	last := len(vals) - 1
	for i, v := range vals[:last] {
		if v > 0xff {
			return netip.Addr{}, false
		}
		n |= v << (24 - 8*i)
	}
	if vals[last] >= 1<<(8*(4-last)) {
		return netip.Addr{}, false
	}
	n |= vals[last]
	return netip.AddrFrom4([4]byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)}), true
}

// isLocalhostName reports whether name is "localhost" or under ".localhost", which
// RFC 6761 reserves for the loopback interface.
func isLocalhostName(name string) bool {
	return name == "localhost" || strings.HasSuffix(name, ".localhost")
}
