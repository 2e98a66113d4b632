// Package lndrest holds what every client of lnd's REST API needs: an HTTPS transport pinned
// to lnd's own certificate and a transport that puts the macaroon on each request. The wallet's
// lnd backend and the regtest harness both build on it.
package lndrest

import (
	"bytes"
	"crypto/tls"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"os"
)

// ErrCertMismatch is returned when lnd presents a certificate other than the pinned one.
var ErrCertMismatch = errors.New("lnd: server certificate does not match the pinned tls.cert")

// PinnedTransport returns an HTTPS transport that trusts exactly the certificates in the PEM
// file certPath, whatever name or address lnd is reached by (it signs its own), and no system
// roots. It ignores proxies from the environment: lnd is reached directly, and a proxy would
// see the macaroon.
func PinnedTransport(certPath string) (*http.Transport, error) {
	certPEM, err := os.ReadFile(certPath)
	if err != nil {
		return nil, fmt.Errorf("lnd: read tls cert: %w", err)
	}
	var pinned [][]byte
	for rest := certPEM; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type == "CERTIFICATE" {
			pinned = append(pinned, block.Bytes)
		}
	}
	if len(pinned) == 0 {
		return nil, fmt.Errorf("lnd: tls cert %s: no PEM certificate", certPath)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = nil
	tr.TLSClientConfig = &tls.Config{
		MinVersion: tls.VersionTLS12,
		// The usual chain and name checks give way to VerifyConnection: the leaf must be one
		// of the pinned certificates, byte for byte.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) > 0 {
				for _, der := range pinned {
					if bytes.Equal(cs.PeerCertificates[0].Raw, der) {
						return nil
					}
				}
			}
			return ErrCertMismatch
		},
	}
	return tr, nil
}

// MacaroonTransport adds lnd's macaroon header (hex) to each request. Keeping the macaroon
// inside the transport means printing a client never shows it.
type MacaroonTransport struct {
	Base     *http.Transport
	Macaroon string // hex
}

// RoundTrip implements http.RoundTripper.
func (t *MacaroonTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	req = req.Clone(req.Context())
	req.Header.Set("Grpc-Metadata-macaroon", t.Macaroon)
	return t.Base.RoundTrip(req)
}
