package worker

import (
	"errors"
	"fmt"
	"net/netip"
)

// errNotPublic is wrapped by the dial error when an input URL leads to an address the worker
// must not fetch from (see refusedBy).
var errNotPublic = errors.New("address is private, loopback, link-local or reserved")

// special is one block of the IANA IPv4 and IPv6 Special-Purpose Address Registries
// (https://www.iana.org/assignments/iana-ipv4-special-registry,
// https://www.iana.org/assignments/iana-ipv6-special-registry), plus multicast and the
// reserved class E, that a fetch must not reach. embedded blocks carry an IPv4 address in
// their last 32 bits: an address in them is judged by that IPv4 address instead.
type special struct {
	name     string
	prefix   netip.Prefix
	embedded bool
}

var specials = []special{
	{name: "this network", prefix: netip.MustParsePrefix("0.0.0.0/8")},
	{name: "private-use 10/8", prefix: netip.MustParsePrefix("10.0.0.0/8")},
	{name: "shared address space (CGNAT)", prefix: netip.MustParsePrefix("100.64.0.0/10")},
	{name: "loopback", prefix: netip.MustParsePrefix("127.0.0.0/8")},
	{name: "link-local", prefix: netip.MustParsePrefix("169.254.0.0/16")},
	{name: "private-use 172.16/12", prefix: netip.MustParsePrefix("172.16.0.0/12")},
	{name: "IETF protocol assignments", prefix: netip.MustParsePrefix("192.0.0.0/24")},
	{name: "documentation TEST-NET-1", prefix: netip.MustParsePrefix("192.0.2.0/24")},
	{name: "6to4 relay anycast", prefix: netip.MustParsePrefix("192.88.99.0/24")},
	{name: "private-use 192.168/16", prefix: netip.MustParsePrefix("192.168.0.0/16")},
	{name: "benchmarking", prefix: netip.MustParsePrefix("198.18.0.0/15")},
	{name: "documentation TEST-NET-2", prefix: netip.MustParsePrefix("198.51.100.0/24")},
	{name: "documentation TEST-NET-3", prefix: netip.MustParsePrefix("203.0.113.0/24")},
	{name: "multicast", prefix: netip.MustParsePrefix("224.0.0.0/4")},
	{name: "reserved class E and limited broadcast", prefix: netip.MustParsePrefix("240.0.0.0/4")},

	// Before ::/96, which holds them, so they are named for what they are.
	{name: "unspecified", prefix: netip.MustParsePrefix("::/128")},
	{name: "loopback", prefix: netip.MustParsePrefix("::1/128")},
	{name: "IPv4-mapped", prefix: netip.MustParsePrefix("::ffff:0:0/96"), embedded: true},
	// Deprecated (RFC 4291); nothing should route it, so it is refused whatever it embeds.
	{name: "IPv4-compatible (deprecated)", prefix: netip.MustParsePrefix("::/96")},
	{name: "IPv4-IPv6 translation (NAT64)", prefix: netip.MustParsePrefix("64:ff9b::/96"), embedded: true},
	{name: "local-use IPv4-IPv6 translation", prefix: netip.MustParsePrefix("64:ff9b:1::/48")},
	{name: "discard-only", prefix: netip.MustParsePrefix("100::/64")},
	{name: "dummy IPv6 prefix", prefix: netip.MustParsePrefix("100:0:0:1::/64")},
	{name: "Teredo", prefix: netip.MustParsePrefix("2001::/32")},
	{name: "IETF protocol assignments", prefix: netip.MustParsePrefix("2001::/23")},
	{name: "documentation", prefix: netip.MustParsePrefix("2001:db8::/32")},
	// 6to4 is deprecated (RFC 7526) and tunnels to whatever IPv4 address it embeds.
	{name: "6to4", prefix: netip.MustParsePrefix("2002::/16")},
	{name: "documentation", prefix: netip.MustParsePrefix("3fff::/20")},
	{name: "segment routing (SRv6) SIDs", prefix: netip.MustParsePrefix("5f00::/16")},
	{name: "unique-local", prefix: netip.MustParsePrefix("fc00::/7")},
	{name: "link-local", prefix: netip.MustParsePrefix("fe80::/10")},
	{name: "site-local (deprecated)", prefix: netip.MustParsePrefix("fec0::/10")},
	{name: "multicast", prefix: netip.MustParsePrefix("ff00::/8")},
}

// globalUnicast6 is the only IPv6 space IANA hands out for global unicast; the rest of the
// IPv6 space is reserved.
var globalUnicast6 = netip.MustParsePrefix("2000::/3")

// refusedBy returns why a must not be dialled for an input ("" when it is a public unicast
// address): the special-purpose block holding it, judged on the embedded IPv4 address for
// IPv4-mapped and NAT64 addresses.
func refusedBy(a netip.Addr) string {
	if !a.IsValid() {
		return "invalid address"
	}
	if a.Zone() != "" {
		return "scoped address"
	}
	for _, s := range specials {
		if !s.prefix.Contains(a) {
			continue
		}
		if !s.embedded {
			return s.name
		}
		b := a.As16()
		v4 := netip.AddrFrom4([4]byte(b[12:]))
		if why := refusedBy(v4); why != "" {
			return s.name + " of " + why
		}
		return ""
	}
	if a.Is6() && !globalUnicast6.Contains(a) {
		return "reserved IPv6"
	}
	return ""
}

// checkDial refuses a dialled address that is not public.
func checkDial(a netip.Addr) error {
	if why := refusedBy(a); why != "" {
		return fmt.Errorf("%w: %s is %s", errNotPublic, a, why)
	}
	return nil
}
