package heartbeat

import (
	"errors"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/nbd-wtf/go-nostr"
)

// nostrdvm's beat as its heartbeat module writes it: free-text status, d, expiration.
var nostrdvmBeat = nostr.Event{Kind: Kind, CreatedAt: 1_700_000_000, Content: "Alive and kicking", Tags: nostr.Tags{
	{"status", "My heart keeps beating like a hammer"}, {"d", "abc"}, {"expiration", "1700000300"},
}}

func TestParse(t *testing.T) {
	ours := Beat{CreatedAt: 1_700_000_000, Identifier: "w1", Status: StatusBusy, Queue: 3, Kinds: []int{5100, 5800}, Provider: "cuda"}.Event()
	tests := []struct {
		name    string
		evt     nostr.Event
		want    Beat
		wantErr error
	}{
		{"ours", ours, Beat{CreatedAt: 1_700_000_000, Identifier: "w1", Expiration: 1_700_000_900, Status: StatusBusy, Queue: 3, Kinds: []int{5100, 5800}, Provider: "cuda"}, nil},
		{"nostrdvm", nostrdvmBeat, Beat{CreatedAt: 1_700_000_000, Identifier: "abc", Expiration: 1_700_000_300, Content: "Alive and kicking", Queue: -1}, nil},
		{"bare", nostr.Event{Kind: Kind}, Beat{Queue: -1}, nil},
		{"wrong kind", nostr.Event{Kind: 1}, Beat{}, ErrWrongKind},
		{"bad queue", nostr.Event{Kind: Kind, Tags: nostr.Tags{{"queue", "-1"}}}, Beat{}, ErrInvalid},
		{"bad kind", nostr.Event{Kind: Kind, Tags: nostr.Tags{{"k", "x"}}}, Beat{}, ErrInvalid},
		{"two statuses", nostr.Event{Kind: Kind, Tags: nostr.Tags{{"status", "ready"}, {"status", "busy"}}}, Beat{}, ErrInvalid},
		{"bad expiration", nostr.Event{Kind: Kind, Tags: nostr.Tags{{"expiration", "soon"}}}, Beat{}, ErrInvalid},
		{"empty provider", nostr.Event{Kind: Kind, Tags: nostr.Tags{{"provider", ""}}}, Beat{}, ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse(&tt.evt)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if err != nil {
				return
			}
			if got.Identifier != tt.want.Identifier || got.Expiration != tt.want.Expiration || got.Status != tt.want.Status ||
				got.Queue != tt.want.Queue || !slices.Equal(got.Kinds, tt.want.Kinds) || got.Provider != tt.want.Provider ||
				got.Content != tt.want.Content || got.CreatedAt != tt.want.CreatedAt {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestTooManyKinds(t *testing.T) {
	evt := nostr.Event{Kind: Kind}
	for range MaxKinds + 1 {
		evt.Tags = append(evt.Tags, nostr.Tag{"k", "5100"}) // repeats collapse into one
	}
	if b, err := Parse(&evt); err != nil || len(b.Kinds) != 1 {
		t.Fatalf("repeated kinds: %v %v", b.Kinds, err)
	}
	evt.Tags = nil
	for i := range MaxKinds + 1 {
		evt.Tags = append(evt.Tags, nostr.Tag{"k", strconv.Itoa(5000 + i)})
	}
	if _, err := Parse(&evt); !errors.Is(err, ErrInvalid) {
		t.Fatalf("%d distinct kinds: err = %v, want ErrInvalid", MaxKinds+1, err)
	}
}

func TestAlive(t *testing.T) {
	at := time.Unix(1_700_000_000, 0)
	b := Beat{CreatedAt: nostr.Timestamp(at.Unix()), Status: StatusReady}
	for _, tt := range []struct {
		age    time.Duration
		maxAge time.Duration
		status string
		want   bool
	}{
		{900 * time.Second, 0, StatusReady, true},
		{901 * time.Second, 0, StatusReady, false},
		{2 * time.Second, time.Second, StatusBusy, false},
		{0, 0, StatusOffline, false},
		{0, 0, StatusPaused, true},
	} {
		b.Status = tt.status
		if got := b.Alive(at.Add(tt.age), tt.maxAge); got != tt.want {
			t.Errorf("age %s max %s status %q: alive = %v, want %v", tt.age, tt.maxAge, tt.status, got, tt.want)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add("status", "ready", "queue", "3", "k", "5100")
	f.Add("status", "free text", "d", "x", "expiration", "1")
	f.Add("queue", "-1", "provider", "", "k", "99999")
	f.Fuzz(func(t *testing.T, n1, v1, n2, v2, n3, v3 string) {
		evt := nostr.Event{Kind: Kind, Tags: nostr.Tags{{n1, v1}, {n2, v2}, {n3, v3}}}
		b, err := Parse(&evt)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v does not wrap ErrInvalid", err)
			}
			return
		}
		if len(b.Kinds) > MaxKinds || b.Queue < -1 {
			t.Fatalf("out of bounds: %+v", b)
		}
		switch b.Status {
		case StatusReady, StatusBusy, StatusPaused, StatusOffline, StatusUnknown:
		default:
			t.Fatalf("status %q escaped", b.Status)
		}
		// What parses round-trips through Event.
		again, err := Parse(ptr(b.Event()))
		if err != nil {
			t.Fatalf("rebuilt beat does not parse: %v", err)
		}
		if again.Status != b.Status || again.Queue != b.Queue || !slices.Equal(again.Kinds, b.Kinds) || again.Provider != b.Provider {
			t.Fatalf("round trip: %+v != %+v", again, b)
		}
	})
}

func ptr(e nostr.Event) *nostr.Event { return &e }
