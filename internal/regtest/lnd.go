package regtest

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"

	"github.com/sparecycles/sparecycles/internal/lndrest"
)

// Node is one lnd node of the network, with what a REST client needs to reach it.
type Node struct {
	Name     string // "alice" or "bob"
	RESTURL  string // https://127.0.0.1:port
	Macaroon string // path to admin.macaroon
	TLSCert  string // path to tls.cert
	PubKey   string // identity pubkey, hex

	p2p  string // host:port for peers
	proc *proc
	http *http.Client // set once tls.cert and the macaroon exist
	mac  string       // admin macaroon, hex
}

// pinnedClient is an HTTPS client that trusts exactly the certificate in certPath.
func pinnedClient(certPath string) (*http.Client, error) {
	tr, err := lndrest.PinnedTransport(certPath)
	if err != nil {
		return nil, err
	}
	return &http.Client{Transport: tr, Timeout: rpcTimeout}, nil
}

// connect sets up the node's client once lnd has written tls.cert and admin.macaroon. It
// reports false while they are missing.
func (n *Node) connect() (bool, error) {
	if n.http != nil {
		return true, nil
	}
	mac, err := os.ReadFile(n.Macaroon)
	if errors.Is(err, os.ErrNotExist) || len(mac) == 0 {
		return false, nil
	} else if err != nil {
		return false, err
	}
	c, err := pinnedClient(n.TLSCert)
	if err != nil {
		return false, err
	}
	n.http, n.mac = c, hex.EncodeToString(mac)
	return true, nil
}

// call sends one REST request to lnd; in (if not nil) is the JSON body, out receives the reply.
func (n *Node) call(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, n.RESTURL+path, body)
	if err != nil {
		return err
	}
	req.Header.Set("Grpc-Metadata-macaroon", n.mac)
	resp, err := n.http.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s %s: %w", n.Name, method, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return fmt.Errorf("%s %s %s: %w", n.Name, method, path, err)
	}
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Message string `json:"message"`
		}
		if json.Unmarshal(raw, &e) != nil || e.Message == "" {
			e.Message = strings.TrimSpace(string(raw))
		}
		return fmt.Errorf("%s %s %s: HTTP %d: %s", n.Name, method, path, resp.StatusCode, e.Message)
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return fmt.Errorf("%s %s %s: decode: %w", n.Name, method, path, err)
	}
	return nil
}

// info is the part of /v1/getinfo the network waits on.
type info struct {
	PubKey string `json:"identity_pubkey"`
	Height int64  `json:"block_height"`
	Synced bool   `json:"synced_to_chain"`
}

func (n *Node) getInfo(ctx context.Context) (info, error) {
	var i info
	err := n.call(ctx, http.MethodGet, "/v1/getinfo", nil, &i)
	return i, err
}

// confirmedBalance is the node's confirmed on-chain balance in satoshis.
func (n *Node) confirmedBalance(ctx context.Context) (int64, error) {
	var b struct {
		Confirmed string `json:"confirmed_balance"` // int64, as a string in lnd's JSON
	}
	if err := n.call(ctx, http.MethodGet, "/v1/balance/blockchain", nil, &b); err != nil {
		return 0, err
	}
	return strconv.ParseInt(b.Confirmed, 10, 64)
}

// activeChannels counts the node's channels that are active (the peer is online and the link up).
func (n *Node) activeChannels(ctx context.Context) (int, error) {
	var r struct {
		Channels []struct {
			Active bool `json:"active"`
		} `json:"channels"`
	}
	if err := n.call(ctx, http.MethodGet, "/v1/channels?active_only=true", nil, &r); err != nil {
		return 0, err
	}
	active := 0
	for _, c := range r.Channels {
		if c.Active {
			active++
		}
	}
	return active, nil
}

// hasRoute reports whether the node finds a route paying sat to dest.
func (n *Node) hasRoute(ctx context.Context, dest string, sat int64) (bool, error) {
	var r struct {
		Routes []json.RawMessage `json:"routes"`
	}
	err := n.call(ctx, http.MethodGet, fmt.Sprintf("/v1/graph/routes/%s/%d", dest, sat), nil, &r)
	if err != nil && strings.Contains(err.Error(), "unable to find a path") {
		return false, nil
	}
	return len(r.Routes) > 0, err
}
