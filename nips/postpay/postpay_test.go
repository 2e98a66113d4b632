package postpay

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/nbd-wtf/go-nostr"

	"github.com/sparecycles/sparecycles/nips/nip90"
)

var (
	job    = strings.Repeat("a", 64)
	worker = strings.Repeat("b", 64)
	buyer  = strings.Repeat("c", 64)
)

func TestOfferAmount(t *testing.T) {
	offer := Offer(job, buyer, 3000)
	tests := []struct {
		name   string
		fb     func(nip90.JobFeedback) nip90.JobFeedback
		want   int64
		wantOK bool
	}{
		{"offer", nil, 3000, true},
		{"prepay quote: an invoice", func(f nip90.JobFeedback) nip90.JobFeedback {
			f.Amount = &nip90.Amount{Msat: 3000, Bolt11: "lnbcrt1"}
			return f
		}, 0, false},
		{"no marker", func(f nip90.JobFeedback) nip90.JobFeedback { f.Extra = nil; return f }, 3000, false},
		{"zero amount", func(f nip90.JobFeedback) nip90.JobFeedback { f.Amount = &nip90.Amount{}; return f }, 0, false},
		{"no amount", func(f nip90.JobFeedback) nip90.JobFeedback { f.Amount = nil; return f }, 0, false},
		{"processing", func(f nip90.JobFeedback) nip90.JobFeedback { f.Status = nip90.StatusProcessing; return f }, 0, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fb := offer
			if tc.fb != nil {
				fb = tc.fb(fb)
			}
			evt := fb.Event() // through the wire form
			parsed, err := nip90.ParseJobFeedback(&evt)
			if err != nil {
				t.Fatal(err)
			}
			got, ok := OfferAmount(parsed)
			if ok != tc.wantOK || (ok && got != tc.want) {
				t.Fatalf("OfferAmount = %d, %v; want %d, %v", got, ok, tc.want, tc.wantOK)
			}
		})
	}
}

func TestParseAcceptance(t *testing.T) {
	good := Acceptance{JobID: job, Worker: worker, Msat: 3000}.Event()
	good.PubKey = buyer
	edit := func(f func(*nostr.Event)) nostr.Event {
		e := good
		e.Tags = nostr.Tags{}
		for _, tag := range good.Tags {
			e.Tags = append(e.Tags, slices.Clone(tag))
		}
		f(&e)
		return e
	}
	tests := []struct {
		name    string
		evt     nostr.Event
		wantErr error
	}{
		{"acceptance", good, nil},
		{"a worker's success feedback", edit(func(e *nostr.Event) { e.Tags = without(e.Tags, TagName) }), ErrNotAcceptance},
		{"another status", edit(func(e *nostr.Event) {
			e.Tags = append(without(e.Tags, "status"), nostr.Tag{"status", "processing", AcceptInfo})
		}), ErrNotAcceptance},
		{"no worker", edit(func(e *nostr.Event) { e.Tags = without(e.Tags, "p") }), ErrBadAcceptance},
		{"no amount", edit(func(e *nostr.Event) { e.Tags = without(e.Tags, "amount") }), ErrBadAcceptance},
		{"an invoice", edit(func(e *nostr.Event) {
			e.Tags = append(without(e.Tags, "amount"), nostr.Tag{"amount", "3000", "lnbcrt1"})
		}), ErrBadAcceptance},
		{"no job", edit(func(e *nostr.Event) { e.Tags = without(e.Tags, "e") }), nip90.ErrMissingTag},
		{"wrong kind", edit(func(e *nostr.Event) { e.Kind = 1 }), nip90.ErrWrongKind},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a, err := ParseAcceptance(&tc.evt)
			if !errors.Is(err, tc.wantErr) || (err == nil) != (tc.wantErr == nil) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if err == nil && (a != Acceptance{Customer: buyer, JobID: job, Worker: worker, Msat: 3000}) {
				t.Fatalf("parsed %+v", a)
			}
		})
	}
}

func FuzzParseAcceptance(f *testing.F) {
	good := Acceptance{JobID: job, Worker: worker, Msat: 3000}.Event()
	f.Add(good.String())
	f.Add(`{"kind":7000,"tags":[["status","success","offer accepted"],["payment","after"]]}`)
	f.Fuzz(func(t *testing.T, s string) {
		var evt nostr.Event
		if err := evt.UnmarshalJSON([]byte(s)); err != nil {
			return
		}
		a, err := ParseAcceptance(&evt)
		if err != nil {
			return
		}
		if a.Msat <= 0 || a.Worker == "" || a.JobID == "" {
			t.Fatalf("accepted %+v from %s", a, s)
		}
	})
}

func without(tags nostr.Tags, name string) nostr.Tags {
	var out nostr.Tags
	for _, t := range tags {
		if len(t) > 0 && t[0] != name {
			out = append(out, t)
		}
	}
	return out
}
