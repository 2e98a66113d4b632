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
