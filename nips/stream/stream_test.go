package stream

import (
	"testing"

	"github.com/nbd-wtf/go-nostr"
)

func TestParsePart(t *testing.T) {
	for _, tc := range []struct {
		name string
		tags nostr.Tags
		want Part
		ok   bool
		err  bool
	}{
		{"none", nostr.Tags{{"e", "x"}}, Part{}, false, false},
		{"first", nostr.Tags{{"part", "1", "3"}}, Part{1, 3}, true, false},
		{"last", nostr.Tags{{"part", "1000", "1000"}}, Part{1000, 1000}, true, false},
		{"zero", nostr.Tags{{"part", "0", "3"}}, Part{}, true, true},
		{"past the end", nostr.Tags{{"part", "4", "3"}}, Part{}, true, true},
		{"too many", nostr.Tags{{"part", "1", "1001"}}, Part{}, true, true},
		{"leading zero", nostr.Tags{{"part", "01", "3"}}, Part{}, true, true},
		{"sign", nostr.Tags{{"part", "+1", "3"}}, Part{}, true, true},
		{"short", nostr.Tags{{"part", "1"}}, Part{}, true, true},
		{"twice", nostr.Tags{{"part", "1", "3"}, {"part", "2", "3"}}, Part{}, true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, ok, err := ParsePart(tc.tags)
			if ok != tc.ok || (err != nil) != tc.err || p != tc.want {
				t.Fatalf("ParsePart(%v) = %v, %v, %v; want %v, %v, err %v", tc.tags, p, ok, err, tc.want, tc.ok, tc.err)
			}
			if ok && err == nil {
				back, _, err := ParsePart(nostr.Tags{p.Tag()})
				if err != nil || back != p {
					t.Fatalf("round trip: %v, %v", back, err)
				}
			}
		})
	}
}

func TestWindowAndBinding(t *testing.T) {
	if w := ParseWindow(nostr.Tags{Window(2)}); w != 2 {
		t.Fatalf("window %d", w)
	}
	for _, bad := range []nostr.Tags{{}, {{"window"}}, {{"window", "0"}}, {{"window", "x"}}} {
		if w := ParseWindow(bad); w != 0 {
			t.Fatalf("ParseWindow(%v) = %d", bad, w)
		}
	}
	id := "5c0ffee5c0ffee5c0ffee5c0ffee5c0ffee5c0ffee5c0ffee5c0ffee5c0ffee0"
	d := InvoiceDescription(id, Part{2, 3})
	if d != "sparecycles job "+id+" part 2/3" || !Binds(d, id, Part{2, 3}) || Binds(d, id, Part{1, 3}) || Binds(d, id, Part{2, 4}) {
		t.Fatalf("binding of %q", d)
	}
	if SealContext(id, Part{12, 30}) != id+":12" {
		t.Fatal(SealContext(id, Part{12, 30}))
	}
	parts := []string{"page one", "", "page\nthree"}
	if got := Split(Join(parts)); len(got) != 3 || got[2] != "page\nthree" || got[1] != "" {
		t.Fatalf("split %q", got)
	}
}

func FuzzParsePart(f *testing.F) {
	f.Add("1", "3")
	f.Add("0", "0")
	f.Add("999", "1000")
	f.Fuzz(func(t *testing.T, k, n string) {
		p, ok, err := ParsePart(nostr.Tags{{"part", k, n}})
		if !ok {
			t.Fatal("a part tag was not seen")
		}
		if err != nil {
			return
		}
		if !p.Valid() {
			t.Fatalf("parsed an invalid part %v", p)
		}
		back, _, err := ParsePart(nostr.Tags{p.Tag()})
		if err != nil || back != p || p.Tag()[1] != k || p.Tag()[2] != n {
			t.Fatalf("%q/%q does not round-trip: %v %v", k, n, back, err)
		}
	})
}
