package lease

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nbd-wtf/go-nostr"
)

var parseTests = []struct {
	name    string
	tags    nostr.Tags
	want    time.Duration
	wantOK  bool
	wantErr error
}{
	{"none", nostr.Tags{{"status", "processing"}}, 0, false, nil},
	{"thirty seconds", nostr.Tags{{"status", "processing"}, {"lease", "30"}}, 30 * time.Second, true, nil},
	{"extra elements ignored", nostr.Tags{{"lease", "5", "future"}}, 5 * time.Second, true, nil},
	{"missing value", nostr.Tags{{"lease"}}, 0, false, ErrBadTag},
	{"zero", nostr.Tags{{"lease", "0"}}, 0, false, ErrBadTag},
	{"negative", nostr.Tags{{"lease", "-3"}}, 0, false, ErrBadTag},
	{"not a number", nostr.Tags{{"lease", "1m"}}, 0, false, ErrBadTag},
	{"fraction", nostr.Tags{{"lease", "1.5"}}, 0, false, ErrBadTag},
	{"huge", nostr.Tags{{"lease", "99999999999"}}, 0, false, ErrBadTag},
	{"two tags", nostr.Tags{{"lease", "30"}, {"lease", "60"}}, 0, false, ErrBadTag},
}

func TestParse(t *testing.T) {
	for _, tc := range parseTests {
		t.Run(tc.name, func(t *testing.T) {
			d, ok, err := Parse(tc.tags)
			if !errors.Is(err, tc.wantErr) || (err == nil) != (tc.wantErr == nil) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if d != tc.want || ok != tc.wantOK {
				t.Fatalf("Parse = %s, %v; want %s, %v", d, ok, tc.want, tc.wantOK)
			}
		})
	}
}

func TestTagRoundTrip(t *testing.T) {
	for _, d := range []time.Duration{time.Second, 1500 * time.Millisecond, 10 * time.Minute} {
		got, ok, err := Parse(nostr.Tags{Tag(d)})
		want := (d + time.Second - 1).Truncate(time.Second)
		if err != nil || !ok || got != want {
			t.Fatalf("Tag(%s) parses to %s, %v, %v; want %s", d, got, ok, err, want)
		}
	}
}

func TestRefusalRoundTrip(t *testing.T) {
	h := Held{Holder: strings.Repeat("ab", 32), Until: 1764151234}
	got, err := ParseRefusal("duplicate: " + h.Reason())
	if err != nil || got != h {
		t.Fatalf("ParseRefusal = %+v, %v; want %+v", got, err, h)
	}
	for _, msg := range []string{"", "duplicate: already have this event", "blocked: leased by x until 3", "duplicate: leased by " + h.Holder + " until soon"} {
		if _, err := ParseRefusal(msg); !errors.Is(err, ErrNoReason) {
			t.Fatalf("ParseRefusal(%q) = %v, want ErrNoReason", msg, err)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, tc := range parseTests {
		for _, tag := range tc.tags {
			if len(tag) > 1 {
				f.Add(tag[1])
			}
		}
	}
	f.Fuzz(func(t *testing.T, v string) {
		d, ok, err := Parse(nostr.Tags{{TagName, v}})
		if err != nil {
			return
		}
		if !ok || d <= 0 {
			t.Fatalf("Parse(%q) = %s, %v without error", v, d, ok)
		}
		if again, _, err := Parse(nostr.Tags{Tag(d)}); err != nil || again != d {
			t.Fatalf("lease %s does not round-trip: %s, %v", d, again, err)
		}
	})
}

func FuzzParseRefusal(f *testing.F) {
	f.Add("duplicate: " + Held{Holder: strings.Repeat("cd", 32), Until: 42}.Reason())
	f.Add("duplicate: leased by  until ")
	f.Fuzz(func(t *testing.T, msg string) {
		h, err := ParseRefusal(msg)
		if err != nil {
			return
		}
		if again, err := ParseRefusal("duplicate: " + h.Reason()); err != nil || again != h {
			t.Fatalf("refusal %+v does not round-trip: %+v, %v", h, again, err)
		}
	})
}
