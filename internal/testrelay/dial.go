package testrelay

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/fasthttp/websocket"
)

// DialFrom opens a raw websocket to url from the local address ip (every 127.0.0.0/8 address
// reaches loopback on Linux, so tests can give each client an address of its own for the
// relay's per-address limits), with extra request headers. With rcvbuf > 0 the socket's
// receive buffer is that small, set before the handshake, for a client that will stop reading.
// The response is returned for a refused handshake's status; its body is closed.
func DialFrom(ctx context.Context, url, ip string, rcvbuf int, header http.Header) (*websocket.Conn, *http.Response, error) {
	nd := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	d := websocket.Dialer{
		NetDialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := nd.DialContext(ctx, network, addr)
			if err == nil && rcvbuf > 0 {
				if err := c.(*net.TCPConn).SetReadBuffer(rcvbuf); err != nil {
					c.Close()
					return nil, err
				}
			}
			return c, err
		},
		HandshakeTimeout: 5 * time.Second,
		ReadBufferSize:   4096,
		WriteBufferSize:  64 << 10,
	}
	c, resp, err := d.DialContext(ctx, url, header)
	if resp != nil && resp.Body != nil {
		resp.Body.Close()
	}
	if err != nil {
		return nil, resp, fmt.Errorf("dial %s from %s: %w", url, ip, err)
	}
	return c, resp, nil
}
