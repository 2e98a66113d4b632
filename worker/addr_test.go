package worker

import (
	"net/netip"
	"strings"
	"testing"
)

// TestRefusedBy checks every block of the IANA special-purpose registries we refuse, at its
// first and last address, and that public addresses pass.
func TestRefusedBy(t *testing.T) {
	tests := []struct {
		name string
		addr string
		want string // "" when the address may be fetched from, else in refusedBy's answer
	}{
		{"public v4", "93.184.215.14", ""},
		{"public v4 next to 100.64/10", "100.128.0.1", ""},
		{"public v4 next to 198.18/15", "198.20.0.1", ""},
		{"public v6", "2606:4700:4700::1111", ""},
		{"IPv4-mapped public", "::ffff:93.184.215.14", ""},
		{"NAT64 of a public v4", "64:ff9b::5db8:d70e", ""},

		{"0.0.0.0/8 first", "0.0.0.0", "this network"},
		{"0.0.0.0/8 last", "0.255.255.255", "this network"},
		{"10/8", "10.1.2.3", "private-use"},
		{"100.64/10 first", "100.64.0.0", "CGNAT"},
		{"100.64/10 last", "100.127.255.255", "CGNAT"},
		{"127/8", "127.0.0.1", "loopback"},
		{"127/8 last", "127.255.255.255", "loopback"},
		{"169.254/16 metadata", "169.254.169.254", "link-local"},
		{"172.16/12 first", "172.16.0.0", "private-use"},
		{"172.16/12 last", "172.31.255.255", "private-use"},
		{"192.0.0/24", "192.0.0.8", "IETF protocol assignments"},
		{"192.0.2/24", "192.0.2.1", "TEST-NET-1"},
		{"192.88.99/24", "192.88.99.1", "6to4 relay anycast"},
		{"192.168/16", "192.168.1.1", "private-use"},
		{"198.18/15 first", "198.18.0.0", "benchmarking"},
		{"198.18/15 last", "198.19.255.255", "benchmarking"},
		{"198.51.100/24", "198.51.100.7", "TEST-NET-2"},
		{"203.0.113/24", "203.0.113.7", "TEST-NET-3"},
		{"224/4 first", "224.0.0.1", "multicast"},
		{"224/4 last", "239.255.255.255", "multicast"},
		{"240/4", "240.0.0.1", "class E"},
		{"limited broadcast", "255.255.255.255", "class E and limited broadcast"},

		{"::/128", "::", "unspecified"},
		{"::1/128", "::1", "loopback"},
		{"IPv4-mapped loopback", "::ffff:127.0.0.1", "IPv4-mapped of loopback"},
		{"IPv4-mapped private", "::ffff:10.0.0.1", "IPv4-mapped of private-use"},
		{"IPv4-compatible loopback", "::127.0.0.1", "IPv4-compatible"},
		{"IPv4-compatible public", "::93.184.215.14", "IPv4-compatible"},
		{"NAT64 of loopback", "64:ff9b::7f00:1", "NAT64) of loopback"},
		{"NAT64 of metadata", "64:ff9b::a9fe:a9fe", "NAT64) of link-local"},
		{"NAT64 of 0/8", "64:ff9b::1", "NAT64) of this network"},
		{"local-use NAT64", "64:ff9b:1::5db8:d70e", "local-use IPv4-IPv6 translation"},
		{"discard-only", "100::1", "discard-only"},
		{"dummy prefix", "100:0:0:1::1", "dummy IPv6 prefix"},
		{"Teredo", "2001:0:4136:e378:8000:63bf:3fff:fdd2", "Teredo"},
		{"2001::/23 last", "2001:1ff:ffff::1", "IETF protocol assignments"},
		{"2001:db8::/32", "2001:db8::1", "documentation"},
		{"6to4 of a public v4", "2002:5db8:d70e::1", "6to4"},
		{"6to4 of loopback", "2002:7f00:1::1", "6to4"},
		{"3fff::/20", "3fff:0fff::1", "documentation"},
		{"5f00::/16", "5f00::1", "SRv6"},
		{"fc00::/7 first", "fc00::1", "unique-local"},
		{"fc00::/7 last", "fdff:ffff::1", "unique-local"},
		{"fe80::/10", "fe80::1", "link-local"},
		{"fe80::/10 scoped", "fe80::1%eth0", "scoped"},
		{"fec0::/10", "fec0::1", "site-local"},
		{"ff00::/8", "ff02::1", "multicast"},
		{"outside 2000::/3", "4000::1", "reserved IPv6"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := refusedBy(netip.MustParseAddr(tc.addr))
			if (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) {
				t.Fatalf("refusedBy(%s) = %q, want %q", tc.addr, got, tc.want)
			}
		})
	}
}

// TestSpecialsNamed keeps every registry entry named.
func TestSpecialsNamed(t *testing.T) {
	for _, s := range specials {
		if s.name == "" || !s.prefix.IsValid() || s.prefix != s.prefix.Masked() {
			t.Errorf("special %q %v: unnamed or not a masked prefix", s.name, s.prefix)
		}
	}
}

// FuzzRefusedBy checks, for any address, that refusedBy never passes what the standard
// library already knows is not public, and judges an IPv4 address the same whether it is
// dialled as IPv4, IPv4-mapped or NAT64.
func FuzzRefusedBy(f *testing.F) {
	for _, s := range []string{"127.0.0.1", "::1", "64:ff9b::7f00:1", "2002:7f00:1::", "93.184.215.14", "fe80::1", "2606:4700::1"} {
		b := netip.MustParseAddr(s).As16()
		f.Add(b[:])
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		if len(raw) != 16 && len(raw) != 4 {
			return
		}
		a, _ := netip.AddrFromSlice(raw)
		why := refusedBy(a)
		if why == "" && (!a.IsGlobalUnicast() || a.IsPrivate() || a.IsLoopback() || a.IsLinkLocalUnicast() || a.IsMulticast() || a.IsUnspecified()) {
			t.Fatalf("%s passed, but the standard library says it is not public", a)
		}
		if why == "" && a.Is4In6() && refusedBy(a.Unmap()) != "" {
			t.Fatalf("%s passed, but its IPv4 address %s is refused", a, a.Unmap())
		}
		if a.Is4() {
			mapped := netip.AddrFrom16(a.As16())
			b := netip.MustParseAddr("64:ff9b::").As16()
			v4 := a.As4()
			copy(b[12:], v4[:])
			nat64 := netip.AddrFrom16(b)
			if (why == "") != (refusedBy(mapped) == "") || (why == "") != (refusedBy(nat64) == "") {
				t.Fatalf("%s: refused %q, as %s %q, as %s %q", a, why, mapped, refusedBy(mapped), nat64, refusedBy(nat64))
			}
		}
	})
}
