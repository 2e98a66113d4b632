package nip47

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nbd-wtf/go-nostr"
)

func TestScreen(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	wallet, client := NewSecret(), NewSecret()
	request := func(edit func(*nostr.Event)) *nostr.Event {
		evt := nostr.Event{Kind: KindRequest, CreatedAt: nostr.Timestamp(now.Unix()), Content: "x",
			Tags: nostr.Tags{{"p", wallet.PubKey()}, {"encryption", EncryptionNIP44}}}
		if edit != nil {
			edit(&evt)
		}
		if err := sign(&evt, client.Hex()); err != nil {
			t.Fatal(err)
		}
		return &evt
	}
	at := func(d time.Duration) string { return strconv.FormatInt(now.Add(d).Unix(), 10) }
	for _, tc := range []struct {
		name      string
		evt       *nostr.Event
		persisted bool          // Service.Seen set: no age limit but MaxAge
		maxAge    time.Duration // Service.MaxAge
		want      string
	}{
		{name: "fresh", evt: request(nil), want: ""},
		{name: "expires later", evt: request(func(e *nostr.Event) { e.Tags = append(e.Tags, nostr.Tag{"expiration", at(time.Second)}) }), want: ""},
		{name: "expired", evt: request(func(e *nostr.Event) { e.Tags = append(e.Tags, nostr.Tag{"expiration", at(-time.Second)}) }), want: "expired"},
		{name: "unreadable expiration", evt: request(func(e *nostr.Event) { e.Tags = append(e.Tags, nostr.Tag{"expiration", "tomorrow"}) }), want: "expired"},
		{name: "too old for the in-memory record", evt: request(func(e *nostr.Event) { e.CreatedAt -= 601 }), want: "too old"},
		{name: "old but Seen persists", evt: request(func(e *nostr.Event) { e.CreatedAt -= 601 }), persisted: true, want: ""},
		{name: "within MaxAge", evt: request(func(e *nostr.Event) { e.CreatedAt -= 3599 }), persisted: true, maxAge: time.Hour, want: ""},
		{name: "older than MaxAge", evt: request(func(e *nostr.Event) { e.CreatedAt -= 3601 }), persisted: true, maxAge: time.Hour, want: "too old"},
		{name: "ahead within the skew", evt: request(func(e *nostr.Event) { e.CreatedAt += 599 }), persisted: true, maxAge: time.Hour, want: ""},
		{name: "dated in the future", evt: request(func(e *nostr.Event) { e.CreatedAt += 601 }), persisted: true, maxAge: time.Hour, want: "dated in the future"},
		{name: "future without MaxAge", evt: request(func(e *nostr.Event) { e.CreatedAt += 601 }), persisted: true, want: ""},
		{name: "to another wallet", evt: request(func(e *nostr.Event) { e.Tags[0][1] = client.PubKey() }), want: "not a request to us"},
		{name: "wrong kind", evt: request(func(e *nostr.Event) { e.Kind = KindResponse }), want: "not a request to us"},
		{name: "tampered", evt: func() *nostr.Event { e := request(nil); e.Content = "y"; return e }(), want: "bad id or signature"},
		{name: "id of another event", evt: func() *nostr.Event { e := request(nil); e.ID = strings.Repeat("a", 64); return e }(), want: "bad id or signature"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sv := &server{Service: &Service{now: func() time.Time { return now }, MaxAge: tc.maxAge}, pk: wallet.PubKey(), inFlight: map[string]*nostr.Event{}}
			if !tc.persisted {
				sv.mem = &memorySeen{ids: map[string]nostr.Timestamp{}}
			}
			if got := sv.screen(tc.evt); got != tc.want {
				t.Errorf("screen = %q, want %q", got, tc.want)
			}
			if tc.want == "" {
				if got := sv.screen(tc.evt); got != "in flight: answered after the first" {
					t.Errorf("second copy while in flight: %q", got)
				}
				if got := sv.screen(tc.evt); got != "in flight" {
					t.Errorf("third copy while in flight: %q", got)
				}
				if again := sv.finish(tc.evt.ID); again != tc.evt {
					t.Errorf("finish returned %v, want the copy that waited", again)
				}
				if got := sv.screen(tc.evt); got != "" {
					t.Errorf("after finish: %q", got)
				}
				if again := sv.finish(tc.evt.ID); again != nil {
					t.Errorf("finish without a copy returned %v", again)
				}
			}
		})
	}
}

func TestMemorySeen(t *testing.T) {
	m := &memorySeen{ids: map[string]nostr.Timestamp{}}
	const t0 = nostr.Timestamp(1_700_000_000)
	if !m.add("a", t0, t0) || m.add("a", t0, t0) {
		t.Fatal("first/repeat wrong")
	}
	if !m.add("b", t0+300, t0+300) || m.add("a", t0, t0+300) {
		t.Fatal("forgot a within the window")
	}
	m.add("c", t0+601, t0+601) // prunes a, whose request is now too old to be served anyway
	if _, ok := m.ids["a"]; ok || len(m.ids) != 2 {
		t.Errorf("after pruning: %v", m.ids)
	}
}
