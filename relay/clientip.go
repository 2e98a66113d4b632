package relay

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"

	"github.com/fiatjaf/khatru"
)

// Proxies is the set of proxies whose forwarding headers the relay believes (--trusted-proxies):
// CIDR prefixes, written "10.0.0.0/8,::1/128". It is a flag.Value.
type Proxies []netip.Prefix

// ParseProxies parses a comma-separated list of CIDR prefixes or single addresses.
func ParseProxies(s string) (Proxies, error) {
	var ps Proxies
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		var p netip.Prefix
		var err error
		if strings.Contains(part, "/") {
			p, err = netip.ParsePrefix(part)
		} else {
			var a netip.Addr
			a, err = netip.ParseAddr(part)
			p = netip.PrefixFrom(a, a.BitLen())
		}
		if err != nil {
			return nil, fmt.Errorf("trusted proxies: %q is not an address or a CIDR prefix", part)
		}
		ps = append(ps, p.Masked())
	}
	return ps, nil
}

// String writes the set back in flag form.
func (ps Proxies) String() string {
	parts := make([]string, len(ps))
	for i, p := range ps {
		parts[i] = p.String()
	}
	return strings.Join(parts, ",")
}

// Set parses a flag value.
func (ps *Proxies) Set(s string) error {
	v, err := ParseProxies(s)
	if err != nil {
		return err
	}
	*ps = v
	return nil
}

// trusts reports whether a is one of the proxies.
func (ps Proxies) trusts(a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// ClientIP is the address a request comes from. The peer's address is the answer unless the
// peer is a trusted proxy: then X-Forwarded-For is read from the right, skipping trusted proxies,
// and the first hop that is not one is the client (a client can put anything on the left of the
// header, but not on the right of what its proxy appended). A trusted proxy that sent no usable
// X-Forwarded-For may name the client in X-Real-IP. Anything unparsable counts as the peer, so
// a forged header can never move a client to a bucket of its choosing.
func ClientIP(req *http.Request, trusted Proxies) netip.Addr {
	peer := remoteAddr(req.RemoteAddr)
	if len(trusted) == 0 || !peer.IsValid() || !trusted.trusts(peer) {
		return peer
	}
	hops := req.Header.Values("X-Forwarded-For")
	client := peer
	for i := len(hops) - 1; i >= 0; i-- {
		parts := strings.Split(hops[i], ",")
		for j := len(parts) - 1; j >= 0; j-- {
			a, err := netip.ParseAddr(strings.TrimSpace(parts[j]))
			if err != nil {
				return client // a hop we cannot read: the last one we could is the client
			}
			client = a.Unmap()
			if !trusted.trusts(client) {
				return client
			}
		}
	}
	if client == peer {
		if a, err := netip.ParseAddr(strings.TrimSpace(req.Header.Get("X-Real-IP"))); err == nil {
			return a.Unmap()
		}
	}
	return client
}

// remoteAddr parses an http.Request's RemoteAddr ("ip:port"); the zero Addr when it is not one.
func remoteAddr(s string) netip.Addr {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap()
	}
	host, _, err := net.SplitHostPort(s)
	if err != nil {
		host = s
	}
	a, _ := netip.ParseAddr(host)
	return a.Unmap()
}

// connInfoKey keys the connInfo in the request context of every websocket the relay serves.
type connInfoKey struct{}

// connInfo is what the relay knows of a connection before khatru takes it over.
type connInfo struct {
	ip      netip.Addr
	release func() // gives back the connection's per-IP slot, once
}

// withConnInfo puts info in req's context; khatru keeps req as the WebSocket's Request.
func withConnInfo(req *http.Request, info *connInfo) *http.Request {
	return req.WithContext(context.WithValue(req.Context(), connInfoKey{}, info))
}

// connInfoOf returns the connInfo of the connection ctx (a khatru hook's context) belongs to,
// or nil for the relay's own calls.
func connInfoOf(ctx context.Context) *connInfo {
	ws := khatru.GetConnection(ctx)
	if ws == nil || ws.Request == nil {
		return nil
	}
	info, _ := ws.Request.Context().Value(connInfoKey{}).(*connInfo)
	return info
}

// clientIPOf is the client address of the connection ctx belongs to ("" for the relay's own
// calls), as ClientIP found it when the connection opened.
func clientIPOf(ctx context.Context) string {
	if info := connInfoOf(ctx); info != nil && info.ip.IsValid() {
		return info.ip.String()
	}
	return ""
}
