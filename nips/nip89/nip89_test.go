package nip89

import (
	"encoding/json"
	"errors"
	"reflect"
	"testing"

	"github.com/nbd-wtf/go-nostr"
)

var sample = HandlerInfo{
	Identifier: "sparecycles-worker", Kinds: []int{5000, 5800}, CreatedAt: 1764150000, Payment: []string{"escrow", "prepay"},
	Metadata: Metadata{Name: "w", About: "ocr", Worker: &Worker{
		Version: 1, Provider: "CPUExecutionProvider", Device: "auto", Relays: []string{"ws://127.0.0.1:7447"}, Payment: "free",
		Models: []Model{{Name: "ocr-ppocrv4", Task: "ocr", Kind: 5000, SHA256: map[string]string{"det": "ab"}, Price: Price{BaseMsat: 1000, PerUnitMsat: 10, Unit: "megapixel"}, Limits: map[string]int64{"max_pixels": 16000000}, Payment: []string{"after"}}},
	}},
}

func TestRoundTrip(t *testing.T) {
	evt, err := sample.Event()
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseHandlerInfo(&evt)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(*got, sample) {
		t.Fatalf("round trip:\n%+v\n%+v", *got, sample)
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name    string
		evt     nostr.Event
		wantErr error
	}{
		{"wrong kind", nostr.Event{Kind: 0}, ErrWrongKind},
		{"no d", nostr.Event{Kind: KindHandlerInfo, Tags: nostr.Tags{{"k", "5000"}}}, ErrInvalid},
		{"two d", nostr.Event{Kind: KindHandlerInfo, Tags: nostr.Tags{{"d", "a"}, {"d", "b"}}}, ErrInvalid},
		{"bad k", nostr.Event{Kind: KindHandlerInfo, Tags: nostr.Tags{{"d", "a"}, {"k", "x"}}}, ErrInvalid},
		{"bad content", nostr.Event{Kind: KindHandlerInfo, Tags: nostr.Tags{{"d", "a"}}, Content: "[1]"}, ErrInvalid},
		{"plain DVM", nostr.Event{Kind: KindHandlerInfo, Tags: nostr.Tags{{"d", "a"}, {"k", "5050"}}, Content: `{"name":"x","nip90Params":{}}`}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseHandlerInfo(&tc.evt)
			if !errors.Is(err, tc.wantErr) || (err == nil) != (tc.wantErr == nil) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
		})
	}
}

func FuzzParseHandlerInfo(f *testing.F) {
	evt, _ := sample.Event()
	b, _ := json.Marshal(evt)
	f.Add(b)
	f.Add([]byte(`{"kind":31990,"tags":[["d","x"],["k","1"]],"content":""}`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		var evt nostr.Event
		if json.Unmarshal(raw, &evt) != nil {
			return
		}
		h, err := ParseHandlerInfo(&evt)
		if err != nil {
			return
		}
		again, err := h.Event()
		if err != nil {
			t.Fatal(err)
		}
		again.PubKey = evt.PubKey
		h2, err := ParseHandlerInfo(&again)
		if err != nil || !reflect.DeepEqual(h, h2) {
			t.Fatalf("round trip: %v\n%+v\n%+v", err, h, h2)
		}
	})
}
