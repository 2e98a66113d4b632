package worker

import (
	"slices"
	"strings"
	"testing"

	"github.com/nbd-wtf/go-nostr"

	"github.com/sparecycles/sparecycles/nips/escrow"
)

func TestParseSchemes(t *testing.T) {
	tests := []struct {
		in      string
		want    []string
		wantErr bool
	}{
		{"", nil, false},
		{"escrow", []string{"escrow"}, false},
		{"escrow, prepay", []string{"escrow", "prepay"}, false},
		{"before", []string{"prepay"}, false},
		{"before,prepay,after", []string{"prepay", "after"}, false},
		{"escrow,,escrow", []string{"escrow"}, false},
		{"barter", nil, true},
	}
	for _, tc := range tests {
		got, err := parseSchemes(tc.in)
		if (err != nil) != tc.wantErr || !slices.Equal(got, tc.want) {
			t.Errorf("parseSchemes(%q) = %v, %v; want %v (error %v)", tc.in, got, err, tc.want, tc.wantErr)
		}
	}
}

// A priced job is paid by the first scheme of the customer's list the model offers; a request
// without a "payment" tag is a plain NIP-90 client's, which cannot open a sealed result.
func TestPickScheme(t *testing.T) {
	tests := []struct {
		name     string
		worker   []string // the worker's --payment
		manifest string   // the model's "payment"
		tag      nostr.Tag
		want     string // "" for a refusal
	}{
		{"escrow client, escrow worker", []string{"escrow", "prepay"}, "", escrow.PaymentSchemesTag("escrow", "prepay"), "escrow"},
		{"client prefers prepay", []string{"escrow", "prepay"}, "", escrow.PaymentSchemesTag("prepay", "escrow"), "prepay"},
		{"plain client, escrow worker", []string{"escrow", "prepay"}, "", nil, "prepay"},
		{"plain client, escrow only", []string{"escrow"}, "", nil, ""},
		{"escrow client, prepay worker", []string{"prepay"}, "", escrow.PaymentSchemesTag("escrow", "prepay"), "prepay"},
		{"escrow-only client, prepay worker", []string{"prepay"}, "", escrow.PaymentSchemesTag("escrow"), ""},
		{"plain client, post-pay model", []string{"escrow", "prepay"}, "after", nil, "after"},
		{"the manifest's old name", []string{"escrow"}, "before", nil, "prepay"},
		{"unknown schemes are skipped", []string{"escrow", "prepay"}, "", escrow.PaymentSchemesTag("cashu", "escrow"), "escrow"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := &model{manifest: Manifest{Payment: tc.manifest}}
			var err error
			if m.manifest.schemes, err = parseSchemes(tc.manifest); err != nil {
				t.Fatal(err)
			}
			w := &Worker{payments: tc.worker}
			w.schemes = newSchemes(w)
			evt := &nostr.Event{Kind: 5000, Tags: nostr.Tags{{"i", "x", "text"}}}
			if tc.tag != nil {
				evt.Tags = append(evt.Tags, tc.tag)
			}
			s, err := w.pick(&job{event: evt, model: m})
			switch {
			case tc.want == "" && err == nil:
				t.Fatalf("picked %s, want a refusal", s.name())
			case tc.want == "" && !strings.Contains(err.Error(), "payment: this worker is paid by"):
				t.Fatalf("refusal %v", err)
			case tc.want != "" && (err != nil || s.name() != tc.want):
				t.Fatalf("picked %v (%v), want %s", s, err, tc.want)
			}
		})
	}
}
