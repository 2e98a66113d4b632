package worker

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/sparecycles/sparecycles/nips/nip01"
)

// Fetcher downloads job inputs named by URL: http(s) with a size cap, a time limit and a
// content-type check, refusing private, loopback, link-local and other special-purpose
// addresses (refusedBy) unless AllowPrivate, checked on the address actually dialled after DNS
// resolution and on every redirect, so DNS tricks and redirects cannot reach them;
// and data: URLs, for clients that cannot host a file.
type Fetcher struct {
	MaxBytes     int64
	Timeout      time.Duration
	AllowPrivate bool
	client       *http.Client
}

// ErrFetch is wrapped by every fetch failure; the wrapping error is a *nip01.Rejection whose
// reason may be sent to the customer.
var ErrFetch = errors.New("worker: fetch input")

// NewFetcher builds a Fetcher.
func NewFetcher(maxBytes int64, timeout time.Duration, allowPrivate bool) *Fetcher {
	f := &Fetcher{MaxBytes: maxBytes, Timeout: timeout, AllowPrivate: allowPrivate}
	dialer := &net.Dialer{Timeout: timeout, Control: f.control}
	f.client = &http.Client{
		Timeout: timeout,
		Transport: &http.Transport{
			DialContext:           dialer.DialContext,
			TLSHandshakeTimeout:   timeout,
			ResponseHeaderTimeout: timeout,
			MaxIdleConns:          16,
			IdleConnTimeout:       30 * time.Second,
		},
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) >= 3 {
				return errors.New("more than 3 redirects")
			}
			if req.URL.Scheme != "http" && req.URL.Scheme != "https" {
				return fmt.Errorf("redirect to a %s URL", req.URL.Scheme)
			}
			return nil
		},
	}
	return f
}

// control runs on the socket about to connect: the one place the real address is known.
func (f *Fetcher) control(network, address string, _ syscall.RawConn) error {
	if f.AllowPrivate {
		return nil
	}
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("address %s: %w", address, err)
	}
	return checkDial(ap.Addr())
}

func fetchErr(format string, args ...any) error {
	return fmt.Errorf("%w: %w", ErrFetch, nip01.Reject(nip01.PrefixError, fmt.Sprintf(format, args...)))
}

// Fetch returns the body of rawURL and its media type, which must be one of accept.
func (f *Fetcher) Fetch(ctx context.Context, rawURL string, accept []string) ([]byte, string, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, "", fetchErr("input URL does not parse")
	}
	switch u.Scheme {
	case "data":
		return f.fetchData(rawURL, accept)
	case "http", "https":
	default:
		return nil, "", fetchErr("input URL scheme %q is not http, https or data", u.Scheme)
	}
	ctx, cancel := context.WithTimeout(ctx, f.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
	if err != nil {
		return nil, "", fetchErr("input URL: %v", err)
	}
	req.Header.Set("Accept", strings.Join(accept, ", "))
	resp, err := f.client.Do(req)
	if err != nil {
		return nil, "", fetchErr("input URL unreachable: %s", fetchReason(err))
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, "", fetchErr("input URL answered %s", resp.Status)
	}
	if resp.ContentLength > f.MaxBytes {
		return nil, "", fetchErr("input is %d bytes, more than the %d bytes allowed", resp.ContentLength, f.MaxBytes)
	}
	mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	body, err := io.ReadAll(io.LimitReader(resp.Body, f.MaxBytes+1))
	if err != nil {
		return nil, "", fetchErr("reading input: %s", fetchReason(err))
	}
	if int64(len(body)) > f.MaxBytes {
		return nil, "", fetchErr("input is more than the %d bytes allowed", f.MaxBytes)
	}
	if mt == "" || mt == "application/octet-stream" {
		mt, _, _ = mime.ParseMediaType(http.DetectContentType(body))
	}
	if !slices.Contains(accept, mt) {
		return nil, "", fetchErr("input is %s, want %s", orUnknown(mt), strings.Join(accept, " or "))
	}
	return body, mt, nil
}

func (f *Fetcher) fetchData(raw string, accept []string) ([]byte, string, error) {
	meta, payload, ok := strings.Cut(strings.TrimPrefix(raw, "data:"), ",")
	if !ok {
		return nil, "", fetchErr("data URL has no comma")
	}
	if int64(len(payload)) > f.MaxBytes*4/3+4 {
		return nil, "", fetchErr("input is more than the %d bytes allowed", f.MaxBytes)
	}
	mt, isBase64 := strings.CutSuffix(meta, ";base64")
	if !isBase64 {
		return nil, "", fetchErr("data URL must be base64")
	}
	body, err := base64.StdEncoding.DecodeString(payload)
	if err != nil {
		return nil, "", fetchErr("data URL is not valid base64")
	}
	if int64(len(body)) > f.MaxBytes {
		return nil, "", fetchErr("input is %d bytes, more than the %d bytes allowed", len(body), f.MaxBytes)
	}
	mt, _, _ = mime.ParseMediaType(mt)
	if mt == "" {
		mt, _, _ = mime.ParseMediaType(http.DetectContentType(body))
	}
	if !slices.Contains(accept, mt) {
		return nil, "", fetchErr("input is %s, want %s", orUnknown(mt), strings.Join(accept, " or "))
	}
	return body, mt, nil
}

// fetchReason keeps what a customer needs from a transport error, without our internals.
func fetchReason(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()):
		return "timed out"
	case errors.Is(err, errNotPublic):
		return errNotPublic.Error()
	case strings.Contains(err.Error(), "connection refused"):
		return "connection refused"
	case strings.Contains(err.Error(), "no such host"):
		return "no such host"
	case strings.Contains(err.Error(), "redirect"):
		return "bad redirect"
	}
	return "connection failed"
}

func orUnknown(mt string) string {
	if mt == "" {
		return "of unknown type"
	}
	return mt
}
