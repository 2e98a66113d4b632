package khatru

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/nbd-wtf/go-nostr"
)

// sparecycles patch: with EncodeOnce a broadcast must send what upstream's EventEnvelope sends.
func TestEncodeOnceEnvelope(t *testing.T) {
	evt := nostr.Event{Kind: 1, Content: "<b>&\"hi\"</b> ü", Tags: nostr.Tags{{"t", "x"}}, CreatedAt: 1}
	if err := evt.Sign(nostr.GeneratePrivateKey()); err != nil {
		t.Fatal(err)
	}
	eventJSON, err := evt.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		subID string
		plain bool // upstream's envelope is valid JSON, so the bytes must match it
	}{
		{"plain", "sub-1", true},
		{"empty", "", true},
		{"quote", `a"b`, false},
		{"backslash", `a\b`, false},
		{"newline", "a\nb", false},
		{"non-ascii", "ü", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			msg := append(appendEventPrefix(nil, tc.subID), eventJSON...)
			msg = append(msg, ']')
			if !json.Valid(msg) {
				t.Fatalf("invalid JSON: %s", msg)
			}
			env, ok := nostr.ParseMessage(string(msg)).(*nostr.EventEnvelope)
			if !ok || env.SubscriptionID == nil || *env.SubscriptionID != tc.subID || env.Event.ID != evt.ID || env.Event.Content != evt.Content {
				t.Fatalf("parsed %+v from %s", env, msg)
			}
			if tc.plain {
				want, _ := nostr.EventEnvelope{SubscriptionID: &tc.subID, Event: evt}.MarshalJSON()
				if !bytes.Equal(msg, want) {
					t.Fatalf("got %s\nwant %s", msg, want)
				}
			}
		})
	}
}

// sparecycles patch: with EncodeOnce, an OK envelope for a well-formed id is written as its own
// MarshalJSON returns it; that must be valid JSON that parses back to the same envelope, and
// ids that OKEnvelope.MarshalJSON would write unescaped must keep the validating path.
func TestDirectOKEnvelope(t *testing.T) {
	id := "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	for _, reason := range []string{"", "blocked: <b>&\"quoted\"</b>", "invalid: ü\n\\", "rate-limited: \u2028"} {
		for _, accepted := range []bool{true, false} {
			b, err := nostr.OKEnvelope{EventID: id, OK: accepted, Reason: reason}.MarshalJSON()
			if err != nil || !json.Valid(b) {
				t.Fatalf("MarshalJSON: %s %v", b, err)
			}
			env, ok := nostr.ParseMessage(string(b)).(*nostr.OKEnvelope)
			if !ok || env.EventID != id || env.OK != accepted || env.Reason != reason {
				t.Fatalf("parsed %+v from %s", env, b)
			}
		}
	}
	for _, bad := range []string{"", id[:63], id + "0", `0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde"`, "0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef"} {
		if isHexID(bad) {
			t.Errorf("isHexID(%q) = true", bad)
		}
	}
	if !isHexID(id) {
		t.Errorf("isHexID(%q) = false", id)
	}
}
