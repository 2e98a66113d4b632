package lnd

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"testing"
	"time"

	"github.com/sparecycles/sparecycles/nips/nip47"
)

// The fixtures in testdata/ are lnd v0.19.3's REST replies, recorded on the regtest network of
// internal/regtest: bob made the invoices, alice paid them.

const (
	coffeeHash     = "2cd3af1e7c58cac9878d4cbc19b7620a5b2c606f4c087d79eec2ff9c6924edf3"
	coffeePreimage = "f57cf8dc84db6baa3613c80c91885a9b77249b8364886a18419d2d06b0036539"
	coffeeCreated  = 1795690877
)

func readJSON(t testing.TB, name string, v any) {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, v); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
}

func TestInvoiceIncoming(t *testing.T) {
	coffee := func(state, preimage string, settledAt int64) nip47.Transaction {
		return nip47.Transaction{
			Type: nip47.TypeIncoming, State: state, Description: "coffee", PaymentHash: coffeeHash,
			Preimage: preimage, Amount: 21_000, CreatedAt: coffeeCreated, ExpiresAt: coffeeCreated + 3600,
			SettledAt: settledAt,
		}
	}
	tests := []struct {
		name string
		file string
		now  int64
		want nip47.Transaction
	}{
		{"open", "invoice_open.json", coffeeCreated + 10, coffee(nip47.StatePending, "", 0)},
		{"open past its expiry", "invoice_open.json", coffeeCreated + 3600, coffee(nip47.StateExpired, "", 0)},
		{"settled", "invoice_settled.json", coffeeCreated + 10, coffee(nip47.StateSettled, coffeePreimage, coffeeCreated)},
		{"canceled on expiry", "invoice_expired.json", coffeeCreated + 5, nip47.Transaction{
			Type: nip47.TypeIncoming, State: nip47.StateExpired, Description: "cancel me",
			PaymentHash: "de7e8fd0f3e33f86604cbd74142dbe65f13234853da49ee96cb77217b7d5fb1d",
			Amount:      1000, CreatedAt: coffeeCreated, ExpiresAt: coffeeCreated + 1,
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var in invoice
			readJSON(t, tc.file, &in)
			got := in.incoming(time.Unix(tc.now, 0))
			got.Invoice = "" // long; checked once below
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got  %+v\nwant %+v", got, tc.want)
			}
		})
	}

	var in invoice
	readJSON(t, "invoice_settled.json", &in)
	if tx := in.incoming(time.Now()); tx.Invoice[:8] != "lnbcrt21" || in.SettleIndex != 1 || in.AddIndex != 1 {
		t.Errorf("invoice %q, add index %d, settle index %d", tx.Invoice, in.AddIndex, in.SettleIndex)
	}
}

func TestPaymentOutgoing(t *testing.T) {
	var list listPaymentsReply
	readJSON(t, "payments.json", &list)
	var pr payReq
	readJSON(t, "payreq.json", &pr)
	if len(list.Payments) != 2 || list.FirstIndexOffset != 1 || list.LastIndexOffset != 3 {
		t.Fatalf("payments.json: %d payments, offsets %d..%d", len(list.Payments), list.FirstIndexOffset, list.LastIndexOffset)
	}

	got := list.Payments[0].outgoing(&pr)
	got.Invoice = ""
	want := nip47.Transaction{
		Type: nip47.TypeOutgoing, State: nip47.StateSettled, Description: "coffee", PaymentHash: coffeeHash,
		Preimage: coffeePreimage, Amount: 21_000, CreatedAt: coffeeCreated, ExpiresAt: coffeeCreated + 3600,
		SettledAt: coffeeCreated,
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("succeeded:\ngot  %+v\nwant %+v", got, want)
	}

	failed := list.Payments[1].outgoing(nil)
	if failed.State != nip47.StateFailed || failed.Preimage != "" || failed.Amount != 2_000_000_000 || failed.SettledAt != 0 {
		t.Errorf("failed: %+v", failed)
	}
	if err := paymentError(list.Payments[1].FailureReason); !errors.Is(err, nip47.ErrInsufficientBalance) {
		t.Errorf("failure reason %s: %v", list.Payments[1].FailureReason, err)
	}
}

func TestGetInfo(t *testing.T) {
	var r getInfoReply
	readJSON(t, "getinfo.json", &r)
	if r.Alias != "alice" || r.network() != "regtest" || r.BlockHeight != 457 || !r.Synced || len(r.PubKey) != 66 {
		t.Errorf("getinfo: %+v, network %q", r, r.network())
	}
	for _, tc := range []struct{ lnd, want string }{
		{"mainnet", "mainnet"}, {"testnet", "testnet"}, {"testnet4", "testnet"}, {"signet", "signet"}, {"regtest", "regtest"},
	} {
		r.Chains[0].Network = tc.lnd
		if got := r.network(); got != tc.want {
			t.Errorf("network %q: got %q, want %q", tc.lnd, got, tc.want)
		}
	}
}

func TestBalanceAndList(t *testing.T) {
	var bal channelBalanceReply
	readJSON(t, "balance_channels.json", &bal)
	if bal.LocalBalance.Msat != 696_530_000 {
		t.Errorf("local balance %d msat", bal.LocalBalance.Msat)
	}
	var list listInvoicesReply
	readJSON(t, "invoices.json", &list)
	if len(list.Invoices) != 1 || list.Invoices[0].State != "SETTLED" || list.LastIndexOffset != 1 {
		t.Errorf("invoices: %+v", list)
	}
}

func TestParseErrorBody(t *testing.T) {
	tests := []struct {
		name         string
		file         string // in testdata/errors, or a literal body
		body         string
		status       int
		wantCode     int
		wantMessage  string
		unauthorized bool
	}{
		{name: "already paid, stream shape", file: "send_again.json", status: 409, wantCode: codeAlreadyExists, wantMessage: "invoice is already paid"},
		{name: "expired invoice", file: "send_expired.json", status: 500, wantCode: 2, wantMessage: "invoice expired. Valid until 2026-11-26 11:01:18 +0000 UTC"},
		{name: "no invoices yet, unary shape", file: "invoice_notfound.json", status: 500, wantCode: 2, wantMessage: "there are no existing invoices"},
		{name: "bad invoice", file: "payreq_bad.json", status: 500, wantCode: 2, wantMessage: "failed converting data to bytes: invalid character not part of charset: 98"},
		{name: "other node's macaroon", file: "getinfo_wrong_macaroon.json", status: 500, wantCode: 2, wantMessage: "verification failed: signature mismatch after caveat verification", unauthorized: true},
		{name: "garbage macaroon", file: "getinfo_garbage_macaroon.json", status: 500, wantCode: 2, wantMessage: "cannot determine data format of binary-encoded macaroon", unauthorized: true},
		{name: "unknown payment", file: "track_unknown.json", status: 404, wantCode: codeNotFound, wantMessage: "payment isn't initiated"},
		{name: "plain text", body: "Not Found\n", status: 404, wantMessage: "Not Found"},
		{name: "empty", body: "", status: 502, wantMessage: "Bad Gateway"},
		{name: "status without message", body: `{"error":{"code":13}}`, status: 500, wantCode: 13, wantMessage: `{"error":{"code":13}}`},
		{name: "permission denied", body: `{"code":7,"message":"permission denied","details":[]}`, status: 403, wantCode: 7, wantMessage: "permission denied", unauthorized: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			body := []byte(tc.body)
			if tc.file != "" {
				var err error
				if body, err = os.ReadFile(filepath.Join("testdata", "errors", tc.file)); err != nil {
					t.Fatal(err)
				}
			}
			e := parseErrorBody(tc.status, body)
			if e.HTTPStatus != tc.status || e.Code != tc.wantCode || e.Message != tc.wantMessage {
				t.Errorf("got %+v, want code %d message %q", e, tc.wantCode, tc.wantMessage)
			}
			if got := errors.Is(e, ErrUnauthorized); got != tc.unauthorized {
				t.Errorf("errors.Is(ErrUnauthorized) = %v, want %v", got, tc.unauthorized)
			}
		})
	}
}

func TestSendError(t *testing.T) {
	transport := errors.New("dial tcp 127.0.0.1:1: connection refused")
	canceled := &apiError{HTTPStatus: 200, Code: codeCanceled, Message: "context canceled"}
	deadline := &apiError{HTTPStatus: 200, Code: codeDeadlineExceeded, Message: "context deadline exceeded"}
	unknownCanceled := &apiError{HTTPStatus: 200, Code: 2, Message: "rpc error: code = Canceled desc = context canceled"}
	tests := []struct {
		name string
		in   error
		want error // a nip47 sentinel, or the input itself when it must stay a plain error
	}{
		{"insufficient balance", &apiError{Code: 2, Message: "insufficient local balance"}, nip47.ErrInsufficientBalance},
		{"expired", &apiError{Code: 2, Message: "invoice expired. Valid until ..."}, nip47.ErrPaymentFailed},
		{"self payment", &apiError{Code: 2, Message: "no self-payments allowed"}, nip47.ErrPaymentFailed},
		{"macaroon", &apiError{Code: 2, Message: "verification failed: signature mismatch after caveat verification"}, ErrUnauthorized},
		{"transport", transport, transport},
		// our request cancelled (shutdown, our deadline): lnd goes on paying, no outcome yet
		{"stream cancelled", canceled, canceled},
		{"stream deadline", deadline, deadline},
		{"cancelled, other code", unknownCanceled, unknownCanceled},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := sendError(tc.in)
			if !errors.Is(got, tc.want) {
				t.Errorf("sendError(%v) = %v, want %v", tc.in, got, tc.want)
			}
			var n *nip47.Error
			if isNIP47 := errors.As(got, &n); isNIP47 != (tc.want == nip47.ErrInsufficientBalance || tc.want == nip47.ErrPaymentFailed) {
				t.Errorf("sendError(%v) = %v: a client-facing error only for payment outcomes", tc.in, got)
			}
		})
	}
}

func TestInvoiceRejected(t *testing.T) {
	tests := []struct {
		in   error
		want bool
	}{
		{&apiError{Code: 2, Message: "memo too large: 1100 bytes (maxsize=1024)"}, true},
		{&apiError{Code: 2, Message: "invoice amount 2100000000000000000 is too large, max is 4294967295"}, true},
		{&apiError{Code: 2, Message: "expiry of 99999999 seconds is greater than max 31536000"}, true},
		{&apiError{Code: codeInvalidArgument, Message: "proto: syntax error"}, true},
		{&apiError{Code: 2, Message: "unable to open database"}, false},
		{errors.New("connection refused"), false},
	}
	for _, tc := range tests {
		msg, got := invoiceRejected(tc.in)
		if got != tc.want || (got && msg == "") {
			t.Errorf("invoiceRejected(%v) = %q, %v; want %v", tc.in, msg, got, tc.want)
		}
	}
}

func TestPaymentError(t *testing.T) {
	tests := []struct {
		reason string
		want   error
	}{
		{"FAILURE_REASON_INSUFFICIENT_BALANCE", nip47.ErrInsufficientBalance},
		{"FAILURE_REASON_NO_ROUTE", nip47.ErrPaymentFailed},
		{"FAILURE_REASON_TIMEOUT", nip47.ErrPaymentFailed},
		{"FAILURE_REASON_INCORRECT_PAYMENT_DETAILS", nip47.ErrPaymentFailed},
		{"FAILURE_REASON_ERROR", nip47.ErrPaymentFailed},
		{"FAILURE_REASON_CANCELED", nip47.ErrPaymentFailed},
		{"FAILURE_REASON_SOMETHING_NEW", nip47.ErrPaymentFailed},
		{"", nip47.ErrPaymentFailed},
	}
	for _, tc := range tests {
		if got := paymentError(tc.reason); !errors.Is(got, tc.want) || got.Message == "" {
			t.Errorf("paymentError(%q) = %v, want %v", tc.reason, got, tc.want)
		}
	}
}

func openFixtureStream(t *testing.T, body []byte) *stream {
	t.Helper()
	r := io.NopCloser(bytes.NewReader(body))
	return &stream{body: r, dec: json.NewDecoder(r)}
}

func TestFinalUpdate(t *testing.T) {
	fixture := func(name string) []byte {
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	succeeded := fixture("send_succeeded.jsonl")
	firstLine := succeeded[:bytes.IndexByte(succeeded, '\n')+1]
	tests := []struct {
		name       string
		body       []byte
		wantStatus string
		wantCode   int // of an *apiError, when one is expected
	}{
		{"in flight twice, then succeeded", succeeded, "SUCCEEDED", 0},
		{"failed", fixture("send_failed.jsonl"), "FAILED", 0},
		{"stream ends in flight", firstLine, "IN_FLIGHT", 0},
		{"error message", fixture("errors/send_again.json"), "", codeAlreadyExists},
		{"empty", nil, "", 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := followPayment(t.Context(), fixtureOpener(t, tc.body))
			if tc.wantStatus == "" {
				if err == nil {
					t.Fatalf("got %+v, want an error", p)
				}
				if tc.wantCode != 0 && !isCode(err, tc.wantCode) {
					t.Fatalf("err = %v, want code %d", err, tc.wantCode)
				}
				return
			}
			if err != nil || p.Status != tc.wantStatus {
				t.Fatalf("got status %q, err %v; want %s", p.Status, err, tc.wantStatus)
			}
		})
	}
	p, _ := followPayment(t.Context(), fixtureOpener(t, succeeded))
	if p.PaymentPreimage != coffeePreimage || p.outgoing(nil).Preimage != coffeePreimage {
		t.Errorf("preimage %s", p.PaymentPreimage)
	}
}

// fixtureOpener opens body as a payment stream, for followPayment.
func fixtureOpener(t *testing.T, body []byte) func(context.Context) (*stream, error) {
	return func(context.Context) (*stream, error) { return openFixtureStream(t, body), nil }
}

func TestNum(t *testing.T) {
	tests := []struct {
		in      string
		want    num
		wantErr bool
	}{
		{`"21000"`, 21000, false},
		{`457`, 457, false},
		{`"0"`, 0, false},
		{`""`, 0, false},
		{`null`, 0, false},
		{`"-5"`, -5, false},
		{`"9223372036854775807"`, 1<<63 - 1, false},
		{`"18446744073709551615"`, 0, true},
		{`"12abc"`, 0, true},
		{`1.5`, 0, true},
		{`true`, 0, true},
	}
	for _, tc := range tests {
		var n num
		err := json.Unmarshal([]byte(tc.in), &n)
		if (err != nil) != tc.wantErr || n != tc.want {
			t.Errorf("num %s = %d, %v; want %d, error %v", tc.in, n, err, tc.want, tc.wantErr)
		}
	}
}

func TestFeeLimit(t *testing.T) {
	for _, tc := range []struct{ amount, want int64 }{
		{1_000, 10_000},
		{1_000_000, 10_000},
		{100_000_000, 1_000_000},
	} {
		if got := feeLimitMsat(tc.amount); got != tc.want {
			t.Errorf("feeLimitMsat(%d) = %d, want %d", tc.amount, got, tc.want)
		}
	}
}

func TestSendRequestJSON(t *testing.T) {
	b, err := json.Marshal(sendRequest{PaymentRequest: "lnbcrt1", TimeoutSeconds: 60, FeeLimitMsat: 10_000})
	if err != nil {
		t.Fatal(err)
	}
	// In-flight updates are on: they tell followPayment that an HTLC is out (and may be held).
	want := `{"payment_request":"lnbcrt1","timeout_seconds":60,"fee_limit_msat":"10000"}`
	if string(b) != want {
		t.Errorf("got  %s\nwant %s", b, want)
	}
}

func TestRecent(t *testing.T) {
	r := newRecent(2)
	for i, tc := range []struct {
		key  string
		want bool
	}{{"a", true}, {"a", false}, {"b", true}, {"c", true}, {"b", false}, {"a", true}} {
		if got := r.add(tc.key); got != tc.want {
			t.Errorf("step %d: add(%q) = %v, want %v", i, tc.key, got, tc.want)
		}
	}
}

// FuzzParseErrorBody: any reply body gives an error with a message, never a panic.
func FuzzParseErrorBody(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("testdata", "errors", "*.json"))
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(500, b)
	}
	f.Add(404, []byte("Not Found"))
	f.Fuzz(func(t *testing.T, status int, body []byte) {
		if status < 100 || status > 599 {
			return
		}
		if e := parseErrorBody(status, body); e.Message == "" && http.StatusText(status) != "" {
			t.Fatalf("no message for HTTP %d body %q", status, body)
		}
	})
}

// FuzzNum: what num accepts, it reads back the same from its decimal form.
func FuzzNum(f *testing.F) {
	for _, s := range []string{`"21000"`, `457`, `null`, `""`, `"-1"`, `"1e3"`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		var n num
		if json.Unmarshal(raw, &n) != nil {
			return
		}
		var again num
		if err := json.Unmarshal([]byte(strconv.Quote(strconv.FormatInt(int64(n), 10))), &again); err != nil || again != n {
			t.Fatalf("%s: %d, then %d (%v)", raw, n, again, err)
		}
	})
}
