package relay

import (
	"net/http"
	"net/netip"
	"testing"
)

var clientIPTests = []struct {
	name    string
	remote  string
	xff     []string // X-Forwarded-For header lines
	realIP  string
	trusted string
	want    string
}{
	{"no proxies: the peer", "198.51.100.1:4000", []string{"203.0.113.9"}, "203.0.113.8", "", "198.51.100.1"},
	{"untrusted peer: headers ignored", "198.51.100.1:4000", []string{"203.0.113.9"}, "", "10.0.0.0/8", "198.51.100.1"},
	{"trusted proxy: the hop it appended", "10.0.0.2:4000", []string{"203.0.113.9"}, "", "10.0.0.0/8", "203.0.113.9"},
	{"forged left part ignored", "10.0.0.2:4000", []string{"1.2.3.4, 203.0.113.9"}, "", "10.0.0.0/8", "203.0.113.9"},
	{"chain of trusted proxies skipped", "10.0.0.2:4000", []string{"1.2.3.4, 203.0.113.9, 10.0.0.7"}, "", "10.0.0.0/8", "203.0.113.9"},
	{"several header lines read right to left", "10.0.0.2:4000", []string{"1.2.3.4", "203.0.113.9, 10.0.0.7"}, "", "10.0.0.0/8", "203.0.113.9"},
	{"garbage hop: the last readable trusted hop", "10.0.0.2:4000", []string{"1.2.3.4, garbage, 10.0.0.7"}, "", "10.0.0.0/8", "10.0.0.7"},
	{"garbage right away: the peer", "10.0.0.2:4000", []string{"garbage"}, "", "10.0.0.0/8", "10.0.0.2"},
	{"X-Real-IP from a trusted proxy", "10.0.0.2:4000", nil, "203.0.113.5", "10.0.0.0/8", "203.0.113.5"},
	{"X-Real-IP from anyone else ignored", "198.51.100.1:4000", nil, "203.0.113.5", "10.0.0.0/8", "198.51.100.1"},
	{"all hops trusted: the left-most", "10.0.0.2:4000", []string{"10.0.0.9"}, "", "10.0.0.0/8", "10.0.0.9"},
	{"ipv6 peer and hop", "[fd00::2]:4000", []string{"2001:db8::7"}, "", "fd00::/8", "2001:db8::7"},
	{"v4-mapped peer matches a v4 prefix", "[::ffff:10.0.0.2]:4000", []string{"203.0.113.9"}, "", "10.0.0.0/8", "203.0.113.9"},
	{"single trusted address", "127.0.0.3:4000", []string{"203.0.113.7"}, "", "127.0.0.3", "203.0.113.7"},
	{"unparsable remote", "nonsense", []string{"203.0.113.7"}, "", "10.0.0.0/8", "invalid IP"},
}

func TestClientIP(t *testing.T) {
	for _, tc := range clientIPTests {
		t.Run(tc.name, func(t *testing.T) {
			trusted, err := ParseProxies(tc.trusted)
			if err != nil {
				t.Fatal(err)
			}
			req := &http.Request{RemoteAddr: tc.remote, Header: http.Header{}}
			for _, v := range tc.xff {
				req.Header.Add("X-Forwarded-For", v)
			}
			if tc.realIP != "" {
				req.Header.Set("X-Real-IP", tc.realIP)
			}
			if got := ClientIP(req, trusted).String(); got != tc.want {
				t.Fatalf("ClientIP = %s, want %s", got, tc.want)
			}
		})
	}
}

func TestParseProxies(t *testing.T) {
	tests := []struct {
		in, want string
		wantErr  bool
	}{
		{"", "", false},
		{"10.0.0.0/8, 192.168.1.7", "10.0.0.0/8,192.168.1.7/32", false},
		{"10.1.2.3/8", "10.0.0.0/8", false},
		{"::1", "::1/128", false},
		{"10.0.0.0/33", "", true},
		{"example.com", "", true},
	}
	for _, tc := range tests {
		got, err := ParseProxies(tc.in)
		if (err != nil) != tc.wantErr {
			t.Errorf("ParseProxies(%q) error %v, want error %v", tc.in, err, tc.wantErr)
			continue
		}
		if err == nil && got.String() != tc.want {
			t.Errorf("ParseProxies(%q) = %s, want %s", tc.in, got, tc.want)
		}
	}
}

// Whatever the headers say, ClientIP never panics, and without a trusted peer it is the peer.
func FuzzClientIP(f *testing.F) {
	for _, tc := range clientIPTests {
		xff := ""
		if len(tc.xff) > 0 {
			xff = tc.xff[0]
		}
		f.Add(tc.remote, xff, tc.realIP, tc.trusted)
	}
	f.Fuzz(func(t *testing.T, remote, xff, realIP, trusted string) {
		proxies, err := ParseProxies(trusted)
		if err != nil {
			return
		}
		req := &http.Request{RemoteAddr: remote, Header: http.Header{}}
		req.Header.Set("X-Forwarded-For", xff)
		req.Header.Set("X-Real-IP", realIP)
		got := ClientIP(req, proxies)
		peer := remoteAddr(remote)
		if !proxies.trusts(peer) && got != peer {
			t.Fatalf("untrusted peer %s became %s", peer, got)
		}
		if got.IsValid() && got.Is4In6() {
			t.Fatalf("%s is not unmapped", got)
		}
		if _, err := netip.ParseAddr(got.String()); got.IsValid() && err != nil {
			t.Fatalf("%s does not parse back", got)
		}
	})
}
