// Package egress is how the HTTP action sinks (webhook, slack, search) reach their
// targets: a guard against server-side request forgery, the HTTP client built on
// it, and the classification of HTTP outcomes into transient and permanent errors.
//
// The guard allows only http and https, refuses legacy numeric host forms
// ("2130706433", "0x7f000001", "0177.0.0.1") and checks every address at dial
// time, in net.Dialer's Control hook after name resolution, so a name that
// resolves to an internal address — also one that changes its answer between
// checks (DNS rebinding) — is refused before connect(2). Blocked unless
// allow-listed: loopback, unspecified, RFC 1918, link-local (cloud metadata at
// 169.254.169.254), CGNAT, IPv6 unique-local and site-local, multicast, reserved
// and documentation ranges, and IPv6 forms carrying any of those IPv4 addresses
// (IPv4-mapped, NAT64, 6to4). Redirects are not followed unless enabled, and then
// every hop is checked again.
package egress
