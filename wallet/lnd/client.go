package lnd

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
	"time"

	"github.com/sparecycles/sparecycles/internal/lndrest"
)

// requestTimeout bounds each unary REST call; streams are bounded by their callers.
const requestTimeout = 30 * time.Second

// maxBody caps what we read of one unary reply.
const maxBody = 32 << 20

// Sentinel errors of New and of every call; match them with errors.Is.
var (
	// ErrCertMismatch means the server did not present the certificate in Config.TLSCertPath.
	ErrCertMismatch = lndrest.ErrCertMismatch
	// ErrUnauthorized means lnd rejected the macaroon, or it lacks a permission the call needs.
	ErrUnauthorized = errors.New("lnd: macaroon rejected")
	// ErrClosed is returned by Subscribe after Close.
	ErrClosed = errors.New("lnd: backend closed")
)

// gRPC status codes that lnd's REST proxy passes through.
const (
	codeCanceled         = 1
	codeInvalidArgument  = 3
	codeDeadlineExceeded = 4
	codeNotFound         = 5
	codeAlreadyExists    = 6
	codePermissionDenied = 7
	codeUnauthenticated  = 16
)

// apiError is an error reply from lnd's REST proxy: a gRPC status carried over HTTP.
type apiError struct {
	HTTPStatus int
	Code       int // gRPC status code
	Message    string
}

func (e *apiError) Error() string {
	return fmt.Sprintf("lnd: %s (HTTP %d, code %d)", e.Message, e.HTTPStatus, e.Code)
}

// Unwrap lets errors.Is(err, ErrUnauthorized) see macaroon rejections.
func (e *apiError) Unwrap() error {
	if e.Code == codeUnauthenticated || e.Code == codePermissionDenied ||
		strings.Contains(e.Message, "macaroon") || strings.Contains(e.Message, "verification failed") {
		return ErrUnauthorized
	}
	return nil
}

// rpcStatus is a gRPC status as JSON: the whole body of a unary error reply, or the "error"
// member of a stream message.
type rpcStatus struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
}

// parseErrorBody reads an error reply in either shape lnd sends: {"code","message"} from unary
// calls and from streams that fail before their first message, {"error":{...}} from streams.
// A reply without a message (a proxy's page, an empty body) becomes the message itself.
func parseErrorBody(httpStatus int, body []byte) *apiError {
	e := &apiError{HTTPStatus: httpStatus}
	var reply struct {
		rpcStatus
		Error *rpcStatus `json:"error"`
	}
	if json.Unmarshal(body, &reply) == nil {
		st := reply.rpcStatus
		if reply.Error != nil {
			st = *reply.Error
		}
		e.Code, e.Message = st.Code, st.Message
	}
	if e.Message == "" {
		e.Message = strings.TrimSpace(string(body))
		if len(e.Message) > 200 {
			e.Message = strings.ToValidUTF8(e.Message[:200], "") + "…"
		}
	}
	if e.Message == "" {
		e.Message = http.StatusText(httpStatus)
	}
	return e
}

func isCode(err error, code int) bool {
	var e *apiError
	return errors.As(err, &e) && e.Code == code
}

// client speaks lnd's REST API: JSON over HTTPS, pinned to one certificate, with the macaroon
// in a header on every request.
type client struct {
	base string
	http *http.Client
}

// newClient reads the certificate and macaroon. The macaroon lives only inside the
// transport, so printing a client or Backend never shows it.
func newClient(cfg Config) (*client, error) {
	if cfg.RESTURL == "" {
		return nil, errors.New("lnd: no REST URL")
	}
	if !strings.HasPrefix(cfg.RESTURL, "https://") {
		return nil, fmt.Errorf("lnd: REST URL %q: want https://host:port", cfg.RESTURL)
	}
	tr, err := lndrest.PinnedTransport(cfg.TLSCertPath)
	if err != nil {
		return nil, err
	}
	mac, err := os.ReadFile(cfg.MacaroonPath)
	if err != nil {
		return nil, fmt.Errorf("lnd: read macaroon: %w", err)
	}
	if len(mac) == 0 {
		return nil, fmt.Errorf("lnd: macaroon %s is empty", cfg.MacaroonPath)
	}

	return &client{
		base: strings.TrimRight(cfg.RESTURL, "/"),
		http: &http.Client{Transport: &lndrest.MacaroonTransport{Base: tr, Macaroon: hex.EncodeToString(mac)}},
	}, nil
}

func (c *client) close() { c.http.Transport.(*lndrest.MacaroonTransport).Base.CloseIdleConnections() }

// do sends a request and returns the response if lnd answered 200; otherwise it reads the
// error reply into an *apiError.
func (c *client) do(ctx context.Context, method, path string, in any) (*http.Response, error) {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return nil, err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return nil, err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		raw, _ := io.ReadAll(io.LimitReader(resp.Body, maxBody))
		return nil, parseErrorBody(resp.StatusCode, raw)
	}
	return resp, nil
}

// call is one unary request: in (if not nil) as the JSON body, the reply into out.
func (c *client) call(ctx context.Context, method, path string, in, out any) error {
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	resp, err := c.do(ctx, method, path, in)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return err
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return fmt.Errorf("lnd: decode %s reply: %w", path, err)
	}
	return nil
}

// stream is a server-streaming reply: one JSON object per message.
type stream struct {
	body io.ReadCloser
	dec  *json.Decoder
}

// openStream starts a streaming call. lnd sends the response headers with the first message,
// so this blocks until there is one (or an error).
func (c *client) openStream(ctx context.Context, method, path string, in any) (*stream, error) {
	resp, err := c.do(ctx, method, path, in)
	if err != nil {
		return nil, err
	}
	return &stream{body: resp.Body, dec: json.NewDecoder(resp.Body)}, nil
}

// next decodes the next message's result into out. It returns io.EOF at the end of the stream
// and an *apiError when lnd sends an error message.
func (s *stream) next(out any) error {
	var msg struct {
		Result json.RawMessage `json:"result"`
		Error  *rpcStatus      `json:"error"`
	}
	if err := s.dec.Decode(&msg); err != nil {
		return err
	}
	if msg.Error != nil {
		return &apiError{HTTPStatus: http.StatusOK, Code: msg.Error.Code, Message: msg.Error.Message}
	}
	if len(msg.Result) == 0 {
		return errors.New("lnd: stream message without result or error")
	}
	return json.Unmarshal(msg.Result, out)
}

func (s *stream) close() error { return s.body.Close() }

// num is an integer as lnd's JSON writes it: 64-bit values as strings, smaller ones as
// numbers. It accepts both.
type num int64

func (n *num) UnmarshalJSON(b []byte) error {
	s := string(b)
	if s == "null" {
		return nil
	}
	if u, err := strconv.Unquote(s); err == nil {
		s = u
	}
	if s == "" {
		*n = 0
		return nil
	}
	// uint64 fields (amounts, indexes) never reach 2^63 in practice; one that did is an error.
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return fmt.Errorf("lnd: number %s: %w", b, err)
	}
	*n = num(v)
	return nil
}
