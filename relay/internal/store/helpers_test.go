package store

import (
	"crypto/sha256"
	"encoding/hex"
	"slices"

	"github.com/nbd-wtf/go-nostr"
)

// hexOf is a deterministic 32-byte hex string for a seed (a pubkey or id; the store never
// checks signatures or that ids are hashes).
func hexOf(seed string) string {
	h := sha256.Sum256([]byte(seed))
	return hex.EncodeToString(h[:])
}

// mkEvent builds an event with a correct id and a made-up signature.
func mkEvent(pubkey string, kind int, ts nostr.Timestamp, content string, tags ...nostr.Tag) *nostr.Event {
	evt := &nostr.Event{PubKey: pubkey, Kind: kind, CreatedAt: ts, Content: content, Tags: nostr.Tags(tags)}
	if evt.Tags == nil {
		evt.Tags = nostr.Tags{}
	}
	evt.ID = evt.GetID()
	evt.Sig = hexOf("sig"+evt.ID) + hexOf("sig2"+evt.ID)
	return evt
}

// sameEvent reports whether two events are equal field by field (a nil and an empty tag list
// are the same).
func sameEvent(a, b *nostr.Event) bool {
	if a == nil || b == nil {
		return a == b
	}
	if a.ID != b.ID || a.PubKey != b.PubKey || a.Sig != b.Sig || a.CreatedAt != b.CreatedAt ||
		a.Kind != b.Kind || a.Content != b.Content || len(a.Tags) != len(b.Tags) {
		return false
	}
	for i := range a.Tags {
		if !slices.Equal(a.Tags[i], b.Tags[i]) {
			return false
		}
	}
	return true
}
