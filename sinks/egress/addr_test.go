package egress

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/VictoriaMetrics/metrics"
)

func TestClassify(t *testing.T) {
	f := func(addr, want string) {
		t.Helper()
		class, blocked := Classify(netip.MustParseAddr(addr))
		if blocked != (want != "") || !strings.HasPrefix(class, want) {
			t.Fatalf("unexpected class of %s; got %q (blocked %v); want %q", addr, class, blocked, want)
		}
	}
	f("127.0.0.1", ClassLoopback)
	f("127.255.255.254", ClassLoopback)
	f("::1", ClassLoopback)
	f("0.0.0.0", ClassUnspecified)
	f("0.1.2.3", ClassUnspecified)
	f("::", ClassUnspecified)
	f("10.0.0.1", ClassPrivate)
	f("172.16.0.1", ClassPrivate)
	f("172.31.255.255", ClassPrivate)
	f("192.168.0.1", ClassPrivate)
	f("169.254.169.254", ClassLinkLocal)
	f("fe80::1", ClassLinkLocal)
	f("fe80::1%eth0", ClassLinkLocal)
	f("100.64.0.1", ClassCGNAT)
	f("100.127.255.255", ClassCGNAT)
	f("fd00::1", ClassUniqueLocal)
	f("fc00::1", ClassUniqueLocal)
	f("fec0::1", ClassSiteLocal)
	f("224.0.0.1", ClassMulticast)
	f("239.255.255.250", ClassMulticast)
	f("ff02::1", ClassMulticast)
	f("255.255.255.255", ClassReserved)
	f("240.0.0.1", ClassReserved)
	f("192.0.0.8", ClassReserved)
	f("198.18.0.1", ClassBenchmarking)
	f("192.0.2.1", ClassDocumentation)
	f("2001:db8::1", ClassDocumentation)
	f("2001:0:4136:e378:8000:63bf:3fff:fdd2", ClassReserved) // Teredo
	f("::7f00:1", ClassIPv4Compat)
	f("64:ff9b:1::1", ClassNAT64Local)
	// IPv6 forms carrying an IPv4 address are classified by it.
	f("::ffff:127.0.0.1", ClassLoopback)
	f("::ffff:169.254.169.254", ClassLinkLocal)
	f("::ffff:10.1.2.3", ClassPrivate)
	f("64:ff9b::127.0.0.1", ClassLoopback)
	f("64:ff9b::10.0.0.1", ClassPrivate)
	f("2002:7f00:1::", ClassLoopback)
	f("2002:a9fe:a9fe::1", ClassLinkLocal)
	// Public addresses pass.
	f("8.8.8.8", "")
	f("1.1.1.1", "")
	f("100.128.0.1", "")
	f("172.32.0.1", "")
	f("::ffff:8.8.8.8", "")
	f("64:ff9b::8.8.8.8", "")
	f("2002:808:808::", "")
	f("2606:4700:4700::1111", "")
}

func TestParseHost(t *testing.T) {
	f := func(host, wantIP string, wantNumeric bool) {
		t.Helper()
		ip, name, numeric := parseHost(host)
		if wantIP == "" {
			if ip.IsValid() || name == "" {
				t.Fatalf("unexpected parse of %q; got ip %v name %q; want a name", host, ip, name)
			}
			return
		}
		if ip != netip.MustParseAddr(wantIP) || numeric != wantNumeric {
			t.Fatalf("unexpected parse of %q; got %v numeric=%v; want %s numeric=%v", host, ip, numeric, wantIP, wantNumeric)
		}
	}
	f("127.0.0.1", "127.0.0.1", false)
	f("127.0.0.1.", "127.0.0.1", false)
	f("[::1]", "::1", false)
	f("2130706433", "127.0.0.1", true)
	f("0x7f000001", "127.0.0.1", true)
	f("0X7F000001", "127.0.0.1", true)
	f("0177.0.0.1", "127.0.0.1", true)
	f("127.1", "127.0.0.1", true)
	f("0x7f.1", "127.0.0.1", true)
	f("017700000001", "127.0.0.1", true)
	f("10.1", "10.0.0.1", true)
	f("example.com", "", false)
	f("0x7g000001", "", false) // not hexadecimal: a (strange) name
	f("1.2.3.4.5", "", false)
	f("4294967296", "", false) // too large for inet_aton: a name
}

// ssrfTargets are the targets of reliability.md S5. None of them may ever receive a
// packet: they are checked by the URL check and the dial hook, called directly.
var ssrfTargets = []struct {
	url     string
	literal string // the address the dial hook sees for it, when it is one
}{
	{"http://127.0.0.1/", "127.0.0.1"},
	{"http://localhost/", ""},
	{"http://LOCALHOST./", ""},
	{"http://api.localhost/", ""},
	{"http://[::1]/", "::1"},
	{"http://0.0.0.0/", "0.0.0.0"},
	{"http://169.254.169.254/latest/meta-data/", "169.254.169.254"},
	{"http://10.0.0.1/", "10.0.0.1"},
	{"http://172.16.0.1/", "172.16.0.1"},
	{"http://192.168.0.1/", "192.168.0.1"},
	{"http://100.64.0.1/", "100.64.0.1"},
	{"http://[fd00::1]/", "fd00::1"},
	{"http://[fe80::1]/", "fe80::1"},
	{"http://[fe80::1%25eth0]/", "fe80::1"},
	{"http://[::ffff:127.0.0.1]/", "::ffff:127.0.0.1"},
	{"http://[::ffff:a9fe:a9fe]/", "::ffff:169.254.169.254"},
	{"http://2130706433/", ""},
	{"http://0x7f000001/", ""},
	{"http://0177.0.0.1/", ""},
	{"http://127.1/", ""},
	{"file:///etc/passwd", ""},
	{"unix:///var/run/docker.sock", ""},
	{"gopher://127.0.0.1/", ""},
	{"http://evil@127.0.0.1/", "127.0.0.1"},
	{"http://evil.example@169.254.169.254/", "169.254.169.254"},
	{"https://127.0.0.1:443/", "127.0.0.1"},
	{"http:///nohost", ""},
}

func TestSSRFTargetsBlocked(t *testing.T) {
	set := metrics.NewSet()
	g, err := New(Options{ActionType: "webhook", Metrics: set})
	if err != nil {
		t.Fatal(err)
	}
	blocked := set.GetOrCreateCounter(`observer_egress_blocked_total{action_type="webhook"}`)
	for _, tc := range ssrfTargets {
		// At configuration load.
		err := CheckURL(tc.url, Policy{})
		var be *BlockedError
		if !errors.As(err, &be) {
			t.Fatalf("unexpected load check of %s; got %v; want a *BlockedError", tc.url, err)
		}
		// Before a request or a redirect.
		u := mustURL(t, tc.url)
		before := blocked.Get()
		if err := g.CheckURL(u); !errors.As(err, &be) {
			t.Fatalf("unexpected CheckURL of %s; got %v; want a *BlockedError", tc.url, err)
		}
		if blocked.Get() != before+1 {
			t.Fatalf("unexpected blocked counter after %s; got %d; want %d", tc.url, blocked.Get(), before+1)
		}
		if tc.literal == "" {
			continue
		}
		// At dial time, with the address the resolver produced.
		addr := netip.AddrPortFrom(netip.MustParseAddr(tc.literal), 80).String()
		if err := g.Control("tcp", addr, nil); !errors.As(err, &be) {
			t.Fatalf("unexpected Control(%s) for %s; got %v; want a *BlockedError", addr, tc.url, err)
		}
	}
	// Public targets pass both checks.
	for _, raw := range []string{"https://hooks.slack.com/services/x", "http://8.8.8.8/", "http://[2606:4700:4700::1111]/", "https://example.com:8443/a?b=c"} {
		if err := CheckURL(raw, Policy{}); err != nil {
			t.Fatalf("unexpected load check error for %s: %v", raw, err)
		}
		if err := g.CheckURL(mustURL(t, raw)); err != nil {
			t.Fatalf("unexpected CheckURL error for %s: %v", raw, err)
		}
	}
	if err := g.Control("tcp", "8.8.8.8:443", nil); err != nil {
		t.Fatalf("unexpected Control error for a public address: %v", err)
	}
	if err := g.Control("tcp", "not-an-address", nil); err == nil {
		t.Fatal("unexpected Control success for an unparsable address")
	}
}

func TestAllowList(t *testing.T) {
	p := Policy{AllowedHosts: []string{"127.0.0.1/32", "10.20.0.0/16", "fd00::7", "search.internal"}}
	g, err := New(Options{Policy: p})
	if err != nil {
		t.Fatal(err)
	}
	f := func(addr string, allowed bool) {
		t.Helper()
		err := g.Control("tcp", addr, nil)
		if (err == nil) != allowed {
			t.Fatalf("unexpected Control(%s); got %v; want allowed=%v", addr, err, allowed)
		}
	}
	f("127.0.0.1:80", true)
	f("[::ffff:127.0.0.1]:80", true) // the mapped form of an allowed address
	f("127.0.0.2:80", false)
	f("10.20.3.4:443", true)
	f("10.21.0.1:443", false)
	f("[fd00::7]:443", true)
	f("[fd00::8]:443", false)
	f("169.254.169.254:80", false)

	for raw, ok := range map[string]bool{
		"http://search.internal:9200/": true,
		"http://SEARCH.internal./":     true,
		"http://127.0.0.1:9200/":       true,
		"http://127.0.0.2:9200/":       false,
		"http://localhost:9200/":       false,
	} {
		err := CheckURL(raw, p)
		if (err == nil) != ok {
			t.Fatalf("unexpected load check of %s with allow-list; got %v; want ok=%v", raw, err, ok)
		}
	}
	// allow_private_networks allows every address, never other schemes.
	all := Policy{AllowPrivateNetworks: true}
	if err := CheckURL("http://169.254.169.254/", all); err != nil {
		t.Fatalf("unexpected error with allow_private_networks: %v", err)
	}
	if err := CheckURL("file:///etc/passwd", all); err == nil {
		t.Fatal("unexpected success for file:// with allow_private_networks")
	}
	if err := CheckURL("http://0x7f000001/", all); err == nil {
		t.Fatal("unexpected success for a legacy numeric host with allow_private_networks")
	}

	for _, bad := range []string{"", "10.0.0.0/33", "not a host", "0177.0.0.1", "exa mple.com"} {
		if err := (&Policy{AllowedHosts: []string{bad}}).Validate(); err == nil {
			t.Fatalf("unexpected success for allowed_hosts entry %q", bad)
		}
	}
}
