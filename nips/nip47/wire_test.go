package nip47

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/nbd-wtf/go-nostr"
)

var responseTests = []struct {
	name    string
	in      string
	method  string
	want    PayInvoiceResult
	wantErr error
}{
	{name: "result", in: `{"result_type":"pay_invoice","result":{"preimage":"0123","fees_paid":12}}`,
		method: MethodPayInvoice, want: PayInvoiceResult{Preimage: "0123", FeesPaid: 12}},
	{name: "result with null error", in: `{"result_type":"pay_invoice","error":null,"result":{"preimage":"ab"}}`,
		method: MethodPayInvoice, want: PayInvoiceResult{Preimage: "ab"}},
	{name: "error", in: `{"result_type":"pay_invoice","error":{"code":"PAYMENT_FAILED","message":"no route"}}`,
		method: MethodPayInvoice, wantErr: ErrPaymentFailed},
	{name: "error without result_type", in: `{"result_type":"","error":{"code":"UNSUPPORTED_ENCRYPTION","message":"x"}}`,
		method: MethodPayInvoice, wantErr: ErrUnsupportedEncryption},
	{name: "error without code", in: `{"result_type":"pay_invoice","error":{"message":"?"}}`,
		method: MethodPayInvoice, wantErr: ErrOther},
	{name: "other result_type", in: `{"result_type":"get_balance","result":{"balance":1}}`,
		method: MethodPayInvoice, wantErr: ErrBadResponse},
	{name: "other result_type with error", in: `{"result_type":"get_balance","error":{"code":"OTHER","message":"x"}}`,
		method: MethodPayInvoice, wantErr: ErrBadResponse},
	{name: "no result", in: `{"result_type":"pay_invoice"}`, method: MethodPayInvoice, wantErr: ErrBadResponse},
	{name: "null result", in: `{"result_type":"pay_invoice","result":null}`, method: MethodPayInvoice, wantErr: ErrBadResponse},
	{name: "result of the wrong shape", in: `{"result_type":"pay_invoice","result":{"preimage":5}}`, method: MethodPayInvoice, wantErr: ErrBadResponse},
	{name: "not JSON", in: `pay_invoice`, method: MethodPayInvoice, wantErr: ErrBadResponse},
	{name: "error of the wrong shape", in: `{"result_type":"pay_invoice","error":"no"}`, method: MethodPayInvoice, wantErr: ErrBadResponse},
}

func TestDecodeResponse(t *testing.T) {
	for _, tc := range responseTests {
		t.Run(tc.name, func(t *testing.T) {
			var got PayInvoiceResult
			err := decodeResponse(tc.in, tc.method, &got)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if err == nil && got != tc.want {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

var requestTests = []struct {
	name       string
	in         string
	wantMethod string
	wantParams string
	wantErr    bool
}{
	{name: "pay_invoice", in: `{"method":"pay_invoice","params":{"invoice":"lnbc50n1"}}`, wantMethod: "pay_invoice", wantParams: `{"invoice":"lnbc50n1"}`},
	{name: "no params", in: `{"method":"get_balance"}`, wantMethod: "get_balance", wantParams: `{}`},
	{name: "null params", in: `{"method":"get_info","params":null}`, wantMethod: "get_info", wantParams: `{}`},
	{name: "array params", in: `{"method":"get_info","params":[1]}`, wantErr: true},
	{name: "no method", in: `{"params":{}}`, wantErr: true},
	{name: "not JSON", in: `get_info`, wantErr: true},
}

func TestDecodeRequest(t *testing.T) {
	for _, tc := range requestTests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := decodeRequest(tc.in)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, want error: %v", err, tc.wantErr)
			}
			if err == nil && (got.Method != tc.wantMethod || string(got.Params) != tc.wantParams) {
				t.Errorf("got %s %s", got.Method, got.Params)
			}
		})
	}
}

func TestEncodeRequest(t *testing.T) {
	for _, tc := range []struct {
		params any
		want   string
	}{
		{nil, `{"method":"get_balance","params":{}}`},
		{PayInvoiceParams{Invoice: "lnbc1"}, `{"method":"get_balance","params":{"invoice":"lnbc1"}}`},
	} {
		got, err := encodeRequest(MethodGetBalance, tc.params)
		if err != nil || got != tc.want {
			t.Errorf("encodeRequest(%v) = %s, %v; want %s", tc.params, got, err, tc.want)
		}
	}
	if _, err := encodeRequest("x", func() {}); err == nil {
		t.Error("unencodable params accepted")
	}
}

func TestExpired(t *testing.T) {
	now := nostr.Timestamp(1000)
	for _, tc := range []struct {
		tags nostr.Tags
		want bool
	}{
		{nil, false},
		{nostr.Tags{{"expiration", "1001"}}, false},
		{nostr.Tags{{"expiration", "1000"}}, true},
		{nostr.Tags{{"expiration", "999"}}, true},
		{nostr.Tags{{"expiration", "soon"}}, true},
		{nostr.Tags{{"expiration"}}, false}, // no value: no tag
	} {
		if got := expired(&nostr.Event{Tags: tc.tags}, now); got != tc.want {
			t.Errorf("expired(%v) = %v, want %v", tc.tags, got, tc.want)
		}
	}
}

func TestRequestTags(t *testing.T) {
	wallet := NewSecret()
	c := NewClient(URI{WalletPubKey: wallet.PubKey(), Relays: []string{"ws://x"}, Secret: NewSecret()}, nil)
	deadline := time.Unix(1700000000, 500)
	for _, scheme := range []string{EncryptionNIP44, EncryptionNIP04} {
		evt, err := c.request(MethodGetBalance, nil, scheme, deadline)
		if err != nil {
			t.Fatal(err)
		}
		want := nostr.Tags{{"p", wallet.PubKey()}, {"encryption", scheme}, {"expiration", "1700000001"}}
		if !reflect.DeepEqual(evt.Tags, want) || evt.Kind != KindRequest || evt.PubKey != c.pub || !verified(&evt) {
			t.Errorf("%s: request %v", scheme, evt)
		}
		content, err := decrypt(scheme, wallet.Hex(), c.pub, evt.Content)
		if err != nil || content != `{"method":"get_balance","params":{}}` {
			t.Errorf("%s: decrypted %q, %v", scheme, content, err)
		}
	}
}

func TestCrypto(t *testing.T) {
	a, b := NewSecret(), NewSecret()
	for _, scheme := range []string{EncryptionNIP44, EncryptionNIP04} {
		ct, err := encrypt(scheme, a.Hex(), b.PubKey(), "hello")
		if err != nil {
			t.Fatal(err)
		}
		if pt, err := decrypt(scheme, b.Hex(), a.PubKey(), ct); err != nil || pt != "hello" {
			t.Errorf("%s: %q, %v", scheme, pt, err)
		}
		if _, err := decrypt(scheme, NewSecret().Hex(), a.PubKey(), ct); err == nil && scheme == EncryptionNIP44 {
			t.Errorf("%s: a third key decrypted", scheme)
		}
	}
	if _, err := encrypt("nip99", a.Hex(), b.PubKey(), "x"); !errors.Is(err, errUnknownEnc) {
		t.Errorf("unknown scheme: %v", err)
	}
	if _, err := encrypt(EncryptionNIP44, strings.Repeat("f", 64), b.PubKey(), "x"); err == nil || strings.Contains(err.Error(), strings.Repeat("f", 64)) {
		t.Errorf("bad key: %v", err)
	}
}

// FuzzDecodeResponse feeds decrypted response content to the client's reader: it never panics,
// a wallet error always has a code, and a result it accepts re-encodes to itself.
func FuzzDecodeResponse(f *testing.F) {
	for _, tc := range responseTests {
		f.Add(tc.in)
	}
	f.Add(`{"result_type":"list_transactions","result":{"transactions":[{"type":"incoming","payment_hash":"ab","amount":1,"metadata":{"a":[1]}}]}}`)
	f.Fuzz(func(t *testing.T, content string) {
		var pay PayInvoiceResult
		checkDecoded(t, decodeResponse(content, MethodPayInvoice, &pay), pay)
		var list ListTransactionsResult
		checkDecoded(t, decodeResponse(content, MethodListTransactions, &list), list)
		_ = decodeResponse(content, MethodGetBalance, nil)
	})
}

func checkDecoded[T any](t *testing.T, err error, got T) {
	t.Helper()
	var werr *Error
	switch {
	case errors.As(err, &werr):
		if werr.Code == "" {
			t.Fatalf("wallet error without code: %v", werr)
		}
	case err != nil:
		if !errors.Is(err, ErrBadResponse) {
			t.Fatalf("error %v does not wrap ErrBadResponse", err)
		}
	default:
		b1, err := json.Marshal(got)
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		var again T
		if err := json.Unmarshal(b1, &again); err != nil {
			t.Fatalf("decode re-encoded %s: %v", b1, err)
		}
		if b2, _ := json.Marshal(again); string(b1) != string(b2) {
			t.Fatalf("round trip changed the result: %s → %s", b1, b2)
		}
	}
}

// FuzzDecodeRequest feeds decrypted request content to the service's reader: it never panics,
// and an accepted request re-encodes to one with the same method and params.
func FuzzDecodeRequest(f *testing.F) {
	for _, tc := range requestTests {
		f.Add(tc.in)
	}
	f.Fuzz(func(t *testing.T, content string) {
		req, err := decodeRequest(content)
		if err != nil {
			return
		}
		enc, err := encodeRequest(req.Method, req.Params)
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		again, err := decodeRequest(enc)
		if err != nil || again.Method != req.Method || !sameJSON(again.Params, req.Params) {
			t.Fatalf("round trip changed the request (err=%v): %s %s → %s %s", err, req.Method, req.Params, again.Method, again.Params)
		}
	})
}

func sameJSON(a, b []byte) bool {
	var va, vb any
	return json.Unmarshal(a, &va) == nil && json.Unmarshal(b, &vb) == nil && reflect.DeepEqual(va, vb)
}

// FuzzDecrypt feeds arbitrary content to decryption, which reads what anyone sends the wallet:
// it must fail cleanly, never panic.
func FuzzDecrypt(f *testing.F) {
	a, b := NewSecret(), NewSecret()
	for _, scheme := range []string{EncryptionNIP44, EncryptionNIP04} {
		ct, err := encrypt(scheme, a.Hex(), b.PubKey(), `{"method":"get_balance"}`)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(ct)
	}
	f.Add("AAAA?iv=AAAA")
	f.Add("AAAAAAAAAAAAAAAAAAAAAA==?iv=AAAAAAAAAAAAAAAAAAAAAA==")
	f.Fuzz(func(t *testing.T, content string) {
		for _, scheme := range []string{EncryptionNIP44, EncryptionNIP04} {
			_, _ = decrypt(scheme, b.Hex(), a.PubKey(), content)
		}
	})
}
