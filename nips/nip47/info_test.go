package nip47

import (
	"encoding/json"
	"errors"
	"reflect"
	"testing"

	"github.com/nbd-wtf/go-nostr"
)

var infoTests = []struct {
	name    string
	in      nostr.Event
	want    Info
	wantErr error
}{
	{name: "spec appendix: no encryption tag means nip04",
		in: nostr.Event{Kind: KindInfo, Content: "pay_invoice pay_keysend get_balance get_info make_invoice lookup_invoice list_transactions multi_pay_invoice multi_pay_keysend sign_message notifications",
			Tags: nostr.Tags{{"notifications", "payment_received payment_sent"}}},
		want: Info{Methods: []string{"pay_invoice", "pay_keysend", "get_balance", "get_info", "make_invoice", "lookup_invoice", "list_transactions", "multi_pay_invoice", "multi_pay_keysend", "sign_message", "notifications"},
			Encryptions: []string{EncryptionNIP04}, Notifications: []string{"payment_received", "payment_sent"}}},
	{name: "both encryptions",
		in:   nostr.Event{Kind: KindInfo, Content: "get_balance", Tags: nostr.Tags{{"encryption", "nip44_v2 nip04"}}},
		want: Info{Methods: []string{"get_balance"}, Encryptions: []string{EncryptionNIP44, EncryptionNIP04}}},
	{name: "nip44 only, odd spacing",
		in:   nostr.Event{Kind: KindInfo, Content: "  pay_invoice\tget_balance ", Tags: nostr.Tags{{"encryption", " nip44_v2 "}}},
		want: Info{Methods: []string{"pay_invoice", "get_balance"}, Encryptions: []string{EncryptionNIP44}}},
	{name: "empty encryption tag reads as absent",
		in:   nostr.Event{Kind: KindInfo, Content: "", Tags: nostr.Tags{{"encryption", ""}, {"notifications", " "}}},
		want: Info{Encryptions: []string{EncryptionNIP04}}},
	{name: "first tag wins; valueless tags ignored",
		in:   nostr.Event{Kind: KindInfo, Content: "get_info", Tags: nostr.Tags{{"encryption"}, {"encryption", "nip44_v2"}, {"encryption", "nip04"}}},
		want: Info{Methods: []string{"get_info"}, Encryptions: []string{EncryptionNIP44}}},
	{name: "wrong kind", in: nostr.Event{Kind: KindResponse, Content: "get_balance"}, wantErr: ErrNotInfo},
}

func TestParseInfo(t *testing.T) {
	for _, tc := range infoTests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseInfo(&tc.in)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if err == nil && !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %#v\nwant %#v", got, tc.want)
			}
		})
	}
	if _, err := ParseInfo(nil); !errors.Is(err, ErrNotInfo) {
		t.Errorf("nil event: err = %v", err)
	}
}

func TestInfoEncryption(t *testing.T) {
	for _, tc := range []struct {
		in   []string
		want string
	}{
		{[]string{EncryptionNIP04, EncryptionNIP44}, EncryptionNIP44},
		{[]string{EncryptionNIP04}, EncryptionNIP04},
		{[]string{"nip44_v3"}, ""},
	} {
		if got := (Info{Encryptions: tc.in}).encryption(); got != tc.want {
			t.Errorf("encryption(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func FuzzParseInfo(f *testing.F) {
	for _, tc := range infoTests {
		f.Add([]byte(tc.in.String()))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		var evt nostr.Event
		if json.Unmarshal(raw, &evt) != nil {
			t.Skip("not event JSON")
		}
		info, err := ParseInfo(&evt)
		if err != nil {
			return
		}
		if len(info.Encryptions) == 0 {
			t.Fatal("no encryption")
		}
		rebuilt := info.Event()
		again, err := ParseInfo(&rebuilt)
		if err != nil || !reflect.DeepEqual(again, info) {
			t.Fatalf("round trip changed the info (err=%v): %#v → %#v", err, info, again)
		}
	})
}

func TestSupportsHoldInvoices(t *testing.T) {
	for _, tc := range []struct {
		methods []string
		want    bool
	}{
		{[]string{MethodPayInvoice, MethodMakeInvoice}, false},
		{[]string{MethodMakeHoldInvoice, MethodSettleHoldInvoice}, false},
		{[]string{MethodPayInvoice, MethodMakeHoldInvoice, MethodSettleHoldInvoice, MethodCancelHoldInvoice}, true},
	} {
		if got := (Info{Methods: tc.methods}).SupportsHoldInvoices(); got != tc.want {
			t.Errorf("%v: SupportsHoldInvoices() = %v, want %v", tc.methods, got, tc.want)
		}
	}
}
