package nip47

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/nbd-wtf/go-nostr"
)

// Errors about what arrived from the other side.
var (
	// ErrBadResponse means a wallet's response could not be read or was not for our request.
	ErrBadResponse = errors.New("nip47: bad response")
	// errBadRequest means a request's content is not a NIP-47 request.
	errBadRequest = errors.New("nip47: bad request")
)

// encodeRequest returns a request's JSON content. Nil params encode as {}.
func encodeRequest(method string, params any) (string, error) {
	raw := json.RawMessage("{}")
	if params != nil {
		b, err := json.Marshal(params)
		if err != nil {
			return "", fmt.Errorf("nip47: encode %s params: %w", method, err)
		}
		raw = b
	}
	b, err := json.Marshal(Request{Method: method, Params: raw})
	if err != nil {
		return "", fmt.Errorf("nip47: encode %s request: %w", method, err)
	}
	return string(b), nil
}

// decodeRequest reads a request's decrypted content. The method must be set and the params an
// object; absent or null params read as {}.
func decodeRequest(content string) (Request, error) {
	var r Request
	if err := json.Unmarshal([]byte(content), &r); err != nil {
		return Request{}, fmt.Errorf("%w: not a JSON object with method and params", errBadRequest)
	}
	if r.Method == "" {
		return Request{}, fmt.Errorf("%w: no method", errBadRequest)
	}
	if len(r.Params) == 0 || bytes.Equal(r.Params, []byte("null")) {
		r.Params = json.RawMessage("{}")
	}
	if r.Params[0] != '{' {
		return Request{}, fmt.Errorf("%w: params is not an object", errBadRequest)
	}
	return r, nil
}

// decodeResponse reads a response's decrypted content to a request for method. A response with
// an error returns it as *Error; otherwise its result is decoded into result (when not nil).
// Errors other than *Error wrap ErrBadResponse.
func decodeResponse(content, method string, result any) error {
	var r Response
	if err := json.Unmarshal([]byte(content), &r); err != nil {
		return fmt.Errorf("%w: %v", ErrBadResponse, err)
	}
	// a wallet that could not read the method answers errors with an empty result_type
	if r.ResultType != method && (r.Error == nil || r.ResultType != "") {
		return fmt.Errorf("%w: result_type %q to a %s request", ErrBadResponse, r.ResultType, method)
	}
	if r.Error != nil {
		e := *r.Error
		if e.Code == "" {
			e.Code = CodeOther
		}
		return &e
	}
	if result == nil {
		return nil
	}
	if len(r.Result) == 0 || bytes.Equal(r.Result, []byte("null")) {
		return fmt.Errorf("%w: %s response without result or error", ErrBadResponse, method)
	}
	if err := json.Unmarshal(r.Result, result); err != nil {
		return fmt.Errorf("%w: %s result: %v", ErrBadResponse, method, err)
	}
	return nil
}

// tagValue returns the value of evt's first tag named key, and whether there is one.
func tagValue(evt *nostr.Event, key string) (string, bool) {
	t := evt.Tags.Find(key)
	if t == nil {
		return "", false
	}
	return t[1], true
}

// expired reports whether a request should be ignored for its "expiration" tag: one that is
// past, or that cannot be read (we cannot tell when it ends).
func expired(evt *nostr.Event, now nostr.Timestamp) bool {
	v, ok := tagValue(evt, "expiration")
	if !ok {
		return false
	}
	exp, err := strconv.ParseInt(v, 10, 64)
	return err != nil || nostr.Timestamp(exp) <= now
}

// requestEncryption is the scheme a request names; no tag means nip04.
func requestEncryption(evt *nostr.Event) string {
	if v, ok := tagValue(evt, "encryption"); ok {
		return strings.TrimSpace(v)
	}
	return EncryptionNIP04
}
