package egress

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strings"
	"syscall"
	"time"

	"github.com/VictoriaMetrics/metrics"
)

// Policy is the egress part of an action's configuration (YAML keys of the webhook,
// slack and search actions). The zero value blocks every private, loopback,
// link-local and otherwise internal address.
type Policy struct {
	// AllowPrivateNetworks turns the address check off: any resolved address may be
	// dialled. Schemes are still restricted to http and https.
	AllowPrivateNetworks bool `yaml:"allow_private_networks"`
	// AllowedHosts lists what may be reached although it is in a blocked range: CIDRs
	// ("10.20.0.0/16"), single addresses ("10.20.0.7", "::1") and host names
	// ("search.internal", matched exactly, case-insensitively, without resolution).
	AllowedHosts []string `yaml:"allowed_hosts"`
}

// Validate checks the allow-list entries.
func (p *Policy) Validate() error {
	_, _, err := parseAllowed(p.AllowedHosts)
	return err
}

func parseAllowed(list []string) ([]netip.Prefix, map[string]bool, error) {
	var prefixes []netip.Prefix
	names := map[string]bool{}
	for _, s := range list {
		s = strings.TrimSpace(s)
		switch {
		case s == "":
			return nil, nil, errors.New("allowed_hosts: empty entry")
		case strings.Contains(s, "/"):
			p, err := netip.ParsePrefix(s)
			if err != nil {
				return nil, nil, fmt.Errorf("allowed_hosts: invalid CIDR %q", s)
			}
			prefixes = append(prefixes, p.Masked())
		default:
			ip, name, numeric := parseHost(s)
			switch {
			case numeric:
				return nil, nil, fmt.Errorf("allowed_hosts: %q is a legacy numeric form of %s; write the address in canonical form", s, ip)
			case ip.IsValid():
				ip = ip.WithZone("")
				prefixes = append(prefixes, netip.PrefixFrom(ip, ip.BitLen()))
			case !validHostName(name):
				return nil, nil, fmt.Errorf("allowed_hosts: %q is neither a CIDR, an address nor a host name", s)
			default:
				names[name] = true
			}
		}
	}
	return prefixes, names, nil
}

// validHostName reports whether s is made of DNS labels (letters, digits, '-', '_').
func validHostName(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for _, label := range strings.Split(s, ".") {
		if label == "" || len(label) > 63 {
			return false
		}
		for _, c := range label {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

// BlockedError says that the guard refused a target. Its message names the host or
// address and the reason; it never holds a URL path or query.
type BlockedError struct {
	Host   string     // the host name or address as written, when known
	Addr   netip.Addr // the address refused, when one was
	Reason string     // "loopback", "private", "scheme", "legacy numeric address", ...
}

func (e *BlockedError) Error() string {
	switch {
	case e.Reason == reasonLegacyNumeric:
		return fmt.Sprintf("egress blocked: %s is a legacy numeric form of %s: write addresses in canonical form", e.Host, e.Addr)
	case e.Addr.IsValid() && e.Host != "" && e.Host != e.Addr.String():
		return fmt.Sprintf("egress blocked: %s resolves to %s, %s", e.Host, e.Addr, describeClass(e.Reason))
	case e.Addr.IsValid():
		return fmt.Sprintf("egress blocked: %s is %s", e.Addr, describeClass(e.Reason))
	case e.Reason == reasonLoopbackName:
		return fmt.Sprintf("egress blocked: %s is a loopback name", e.Host)
	}
	return fmt.Sprintf("egress blocked: %s: %s", e.Host, e.Reason)
}

// Reasons of a *BlockedError that are not address classes.
const (
	reasonLegacyNumeric = "legacy numeric address"
	reasonLoopbackName  = ClassLoopback + " name"
)

// classPhrases describe the address classes in errors, with their article.
var classPhrases = map[string]string{
	ClassLoopback:      "a loopback address",
	ClassUnspecified:   "an unspecified address",
	ClassPrivate:       "a private address",
	ClassLinkLocal:     "a link-local address",
	ClassCGNAT:         "a shared (CGNAT) address",
	ClassUniqueLocal:   "a unique local address",
	ClassSiteLocal:     "a site-local address",
	ClassMulticast:     "a multicast address",
	ClassReserved:      "a reserved address",
	ClassDocumentation: "a documentation address",
	ClassBenchmarking:  "a benchmarking address",
	ClassIPv4Compat:    "an IPv4-compatible IPv6 address",
	ClassNAT64Local:    "a local-use NAT64 address",
	"invalid":          "an invalid address",
}

// describeClass returns the phrase for an address class ("a link-local address"),
// keeping the form that carried it ("a private address (IPv4-mapped)").
func describeClass(class string) string {
	base, form, _ := strings.Cut(class, " (")
	p, ok := classPhrases[base]
	if !ok {
		return "a blocked address (" + class + ")"
	}
	if form != "" {
		p += " (" + form
	}
	return p
}

// WithHint adds to a *BlockedError for an internal address how to allow it, for
// configuration errors; other errors are returned as they are.
func WithHint(err error) error {
	var be *BlockedError
	if errors.As(err, &be) && be.Reason != reasonLegacyNumeric &&
		(be.Addr.IsValid() || strings.HasPrefix(be.Reason, ClassLoopback)) {
		return fmt.Errorf("%w (list it in allowed_hosts, or set allow_private_networks: true)", err)
	}
	return err
}

// Resolver looks up the addresses of a host name; *net.Resolver implements it.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// Options configures a Guard.
type Options struct {
	Policy
	// ActionType labels the blocked-attempts counter ("webhook").
	ActionType string
	// Metrics receives observer_egress_blocked_total{action_type}; nil counts nothing.
	Metrics *metrics.Set
	// Resolver resolves host names; nil means net.DefaultResolver. The guard checks
	// the addresses it returns when it dials them, so a name that resolves to a
	// blocked address at request time (DNS rebinding) is refused.
	Resolver Resolver
}

// Guard decides which network targets the HTTP sinks may reach. Targets are checked
// twice: URLs (scheme, literal addresses, "localhost" names) before a request or a
// redirect is made, and every resolved address in the dialer's Control hook, just
// before the connection is opened. A Guard is safe for concurrent use.
type Guard struct {
	allowAll bool
	prefixes []netip.Prefix
	names    map[string]bool
	resolver Resolver
	blocked  *metrics.Counter
	dialer   net.Dialer // checks each address in Control
	open     net.Dialer // for allow-listed host names
}

// New returns a guard for opts; it fails on an invalid allow-list entry.
func New(opts Options) (*Guard, error) {
	prefixes, names, err := parseAllowed(opts.AllowedHosts)
	if err != nil {
		return nil, err
	}
	g := &Guard{allowAll: opts.AllowPrivateNetworks, prefixes: prefixes, names: names, resolver: opts.Resolver}
	if g.resolver == nil {
		g.resolver = net.DefaultResolver
	}
	if opts.Metrics != nil {
		typ := opts.ActionType
		if typ == "" {
			typ = "unknown"
		}
		g.blocked = opts.Metrics.GetOrCreateCounter(`observer_egress_blocked_total{action_type="` + typ + `"}`)
	}
	g.dialer = net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second, Control: g.Control}
	g.open = net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}
	return g, nil
}

// CheckURL checks a target URL without resolving it: the scheme must be http or
// https, the host present and not a legacy numeric address, and a literal address
// or a localhost name must not be blocked. A public host name passes; its
// addresses are checked when they are dialled. The error is a *BlockedError.
func (g *Guard) CheckURL(u *url.URL) error {
	err := checkURL(u, g.allowAll, g.prefixes, g.names)
	if err != nil && g.blocked != nil {
		g.blocked.Inc()
	}
	return err
}

// CheckURL checks raw against policy as Guard.CheckURL does, for configuration
// loading: an http(s) URL whose host is not a blocked literal address.
func CheckURL(raw string, p Policy) error {
	prefixes, names, err := parseAllowed(p.AllowedHosts)
	if err != nil {
		return err
	}
	u, err := url.Parse(raw)
	if err != nil {
		return errors.New("invalid URL") // url.Parse errors quote the URL, which may hold a secret
	}
	return checkURL(u, p.AllowPrivateNetworks, prefixes, names)
}

func checkURL(u *url.URL, allowAll bool, prefixes []netip.Prefix, names map[string]bool) error {
	if u.Scheme != "http" && u.Scheme != "https" {
		return &BlockedError{Host: u.Scheme + "://", Reason: "only http and https URLs are allowed"}
	}
	if u.Host == "" || u.Hostname() == "" {
		return &BlockedError{Host: u.Scheme + "://", Reason: "the URL has no host"}
	}
	return checkHost(u.Hostname(), allowAll, prefixes, names)
}

func checkHost(host string, allowAll bool, prefixes []netip.Prefix, names map[string]bool) error {
	ip, name, numeric := parseHost(host)
	switch {
	case numeric:
		return &BlockedError{Host: host, Addr: ip, Reason: reasonLegacyNumeric}
	case ip.IsValid():
		return checkAddr(ip, host, allowAll, prefixes)
	case allowAll || names[name]:
		return nil
	case isLocalhostName(name):
		return &BlockedError{Host: host, Reason: reasonLoopbackName}
	}
	return nil
}

func checkAddr(ip netip.Addr, host string, allowAll bool, prefixes []netip.Prefix) error {
	if allowAll {
		return nil
	}
	class, blocked := Classify(ip)
	if !blocked {
		return nil
	}
	plain := ip.WithZone("")
	for _, p := range prefixes {
		if p.Contains(plain) || p.Contains(plain.Unmap()) {
			return nil
		}
	}
	return &BlockedError{Host: host, Addr: plain, Reason: class}
}

// Control is the net.Dialer Control hook: it runs after name resolution, just
// before connect(2), with the address about to be dialled, and refuses blocked
// addresses that are not allow-listed.
func (g *Guard) Control(network, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		if g.blocked != nil {
			g.blocked.Inc()
		}
		return &BlockedError{Host: address, Reason: "not an IP address and port"}
	}
	if err := checkAddr(ap.Addr(), "", g.allowAll, g.prefixes); err != nil {
		if g.blocked != nil {
			g.blocked.Inc()
		}
		return err
	}
	return nil
}

// DialContext dials addr ("host:port") for an http.Transport. Host names are
// resolved with the guard's resolver and each address is dialled (in the order the
// resolver gave) through Control; an allow-listed name is dialled without the
// address check. Legacy numeric hosts are refused before any lookup.
func (g *Guard) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	if err := checkHost(host, g.allowAll, g.prefixes, g.names); err != nil {
		if g.blocked != nil {
			g.blocked.Inc()
		}
		return nil, err
	}
	ip, name, _ := parseHost(host)
	if ip.IsValid() {
		return g.dialer.DialContext(ctx, network, net.JoinHostPort(ip.String(), port))
	}
	d := &g.dialer
	if g.names[name] {
		d = &g.open
	}
	ips, err := g.resolver.LookupNetIP(ctx, ipNetwork(network), name)
	if err != nil {
		return nil, err
	}
	if len(ips) == 0 {
		return nil, &net.DNSError{Err: "no addresses", Name: name, IsNotFound: true}
	}
	var blocked, other error
	for _, ip := range ips {
		c, err := d.DialContext(ctx, network, net.JoinHostPort(ip.WithZone("").String(), port))
		if err == nil {
			return c, nil
		}
		var be *BlockedError
		if errors.As(err, &be) {
			be.Host = name
			blocked = err
		} else {
			other = err
		}
		if ctx.Err() != nil {
			break
		}
	}
	if other != nil {
		return nil, other
	}
	return nil, blocked
}

func ipNetwork(network string) string {
	switch network {
	case "tcp4":
		return "ip4"
	case "tcp6":
		return "ip6"
	}
	return "ip"
}
