package review

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strings"
	"testing"

	"github.com/nbd-wtf/go-nostr"

	"github.com/sparecycles/sparecycles/nips/stream"
)

var (
	customer = strings.Repeat("c", 64)
	worker   = strings.Repeat("a", 64)
	jobID    = strings.Repeat("1", 64)
	preimage = strings.Repeat("0f", 32)
	hash     = hashOf(preimage)
)

func hashOf(pre string) string {
	b, _ := hex.DecodeString(pre)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

func good() Review {
	return Review{PubKey: customer, CreatedAt: 1_800_000_000, Job: jobID, Worker: worker, JobKind: 5000, Rating: 4,
		Text: "fast and right", Bolt11: "lnbcrt10u1fake", Preimage: preimage}
}

// with returns good()'s event with the tag named name replaced by tag (removed when tag is nil).
func with(name string, tag nostr.Tag) nostr.Event {
	evt := good().Event()
	var tags nostr.Tags
	for _, t := range evt.Tags {
		switch {
		case t[0] != name:
			tags = append(tags, t)
		case tag != nil:
			tags = append(tags, tag)
		}
	}
	evt.Tags = tags
	evt.PubKey = customer
	return evt
}

func TestParse(t *testing.T) {
	evt := good().Event()
	evt.PubKey = customer
	twoRatings := good().Event()
	twoRatings.Tags = append(twoRatings.Tags, nostr.Tag{"l", "5", Namespace})
	other := nostr.Event{Kind: Kind, Tags: nostr.Tags{{"L", "ugc"}, {"l", "spam", "ugc"}, {"e", jobID}}}
	tests := []struct {
		name    string
		evt     nostr.Event
		want    Review
		wantErr error
	}{
		{"good", evt, good(), nil},
		{"relay hint", with("e", nostr.Tag{"e", jobID, "wss://r.example"}), func() Review { r := good(); r.JobRelay = "wss://r.example"; return r }(), nil},
		{"another namespace", other, Review{}, ErrWrongKind},
		{"not a label", nostr.Event{Kind: 1, Tags: evt.Tags}, Review{}, ErrWrongKind},
		{"namespace only in l", with("L", nil), Review{}, ErrInvalid},
		{"no bolt11", with("bolt11", nil), Review{}, ErrNoProof},
		{"no preimage", with("preimage", nil), Review{}, ErrNoProof},
		{"rating 0", with("l", nostr.Tag{"l", "0", Namespace}), Review{}, ErrInvalid},
		{"rating 6", with("l", nostr.Tag{"l", "6", Namespace}), Review{}, ErrInvalid},
		{"rating 4.5", with("l", nostr.Tag{"l", "4.5", Namespace}), Review{}, ErrInvalid},
		{"l in another namespace", with("l", nostr.Tag{"l", "4", "ugc"}), Review{}, ErrInvalid},
		{"two ratings", twoRatings, Review{}, ErrInvalid},
		{"no job", with("e", nil), Review{}, ErrInvalid},
		{"bad job", with("e", nostr.Tag{"e", "xyz"}), Review{}, ErrInvalid},
		{"no worker", with("p", nil), Review{}, ErrInvalid},
		{"upper-case worker", with("p", nostr.Tag{"p", strings.ToUpper(worker)}), Review{}, ErrInvalid},
		{"k not a job kind", with("k", nostr.Tag{"k", "1"}), Review{}, ErrInvalid},
		{"k with a leading zero", with("k", nostr.Tag{"k", "05000"}), Review{}, ErrInvalid},
		{"short preimage", with("preimage", nostr.Tag{"preimage", "00"}), Review{}, ErrInvalid},
		{"huge bolt11", with("bolt11", nostr.Tag{"bolt11", "lnbc" + strings.Repeat("q", MaxBolt11)}), Review{}, ErrInvalid},
		{"empty bolt11", with("bolt11", nostr.Tag{"bolt11", ""}), Review{}, ErrInvalid},
		{"text too long", func() nostr.Event { e := good().Event(); e.Content = strings.Repeat("é", MaxText+1); return e }(), Review{}, ErrInvalid},
		{"text not utf-8", func() nostr.Event { e := good().Event(); e.Content = "\xff"; return e }(), Review{}, ErrInvalid},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Parse(&tc.evt)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if err != nil {
				return
			}
			if got != tc.want {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
		})
	}
	long := good()
	long.Text = strings.Repeat("é", MaxText) // 2000 characters, 4000 bytes: fine
	if _, err := Parse(ptr(long.Event())); err != nil {
		t.Fatalf("a text of %d characters: %v", MaxText, err)
	}
}

func TestVerify(t *testing.T) {
	r := good()
	job := &nostr.Event{ID: jobID, PubKey: customer, Kind: 5000}
	quote := &nostr.Event{Kind: 7000, PubKey: worker, Tags: nostr.Tags{
		{"status", "payment-required"}, {"e", jobID}, {"p", customer}, {"amount", "1000", r.Bolt11},
	}}
	partQuote := &nostr.Event{Kind: 7000, PubKey: worker, Tags: append(quote.Tags, stream.Part{K: 2, N: 3}.Tag())}
	postpay := &nostr.Event{Kind: 6000, PubKey: worker, Tags: nostr.Tags{
		{"e", jobID}, {"p", customer}, {"request", `{"kind":5000}`}, {"amount", "1000", r.Bolt11},
	}}
	inv := Invoice{PaymentHash: hash, Description: Description(jobID)}
	partDescHash := sha256.Sum256([]byte(stream.InvoiceDescription(jobID, stream.Part{K: 2, N: 3})))
	partInv := Invoice{PaymentHash: hash, DescriptionHash: hex.EncodeToString(partDescHash[:])}
	strangerQuote := *quote
	strangerQuote.PubKey = strings.Repeat("b", 64)
	otherJobQuote := &nostr.Event{Kind: 7000, PubKey: worker, Tags: nostr.Tags{
		{"status", "payment-required"}, {"e", strings.Repeat("2", 64)}, {"amount", "1000", r.Bolt11},
	}}
	otherInvoice := &nostr.Event{Kind: 7000, PubKey: worker, Tags: nostr.Tags{
		{"status", "payment-required"}, {"e", jobID}, {"amount", "1000", "lnbcrt10u1other"},
	}}
	tests := []struct {
		name    string
		p       Proof
		wantErr error
	}{
		{"quote", Proof{job, inv, quote}, nil},
		{"post-pay result", Proof{job, inv, postpay}, nil},
		{"stream part, description hash", Proof{job, partInv, partQuote}, nil},
		{"no job", Proof{nil, inv, quote}, ErrNoJob},
		{"another's job", Proof{&nostr.Event{ID: jobID, PubKey: worker, Kind: 5000}, inv, quote}, ErrNotRequester},
		{"job of another kind", Proof{&nostr.Event{ID: jobID, PubKey: customer, Kind: 5100}, inv, quote}, ErrJobKind},
		{"someone else's preimage", Proof{job, Invoice{PaymentHash: hashOf(strings.Repeat("00", 32)), Description: Description(jobID)}, quote}, ErrPreimage},
		{"no issuing event", Proof{job, inv, nil}, ErrNotIssued},
		{"issued by a stranger", Proof{job, inv, &strangerQuote}, ErrNotIssued},
		{"issued for another job", Proof{job, inv, otherJobQuote}, ErrNotIssued},
		{"another invoice", Proof{job, inv, otherInvoice}, ErrNotIssued},
		{"description names another job", Proof{job, Invoice{PaymentHash: hash, Description: Description(strings.Repeat("2", 64))}, quote}, ErrNotBound},
		{"a part's invoice on a whole-job quote", Proof{job, partInv, quote}, ErrNotBound},
		{"a whole-job invoice on a part's quote", Proof{job, inv, partQuote}, ErrNotBound},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := Verify(r, tc.p); !errors.Is(err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	f.Add("l", "4", Namespace, "preimage", preimage, "fine")
	f.Add("l", "9", Namespace, "bolt11", "", "")
	f.Add("e", "x", "", "k", "5000", "\xff")
	f.Add("L", "ugc", "", "p", worker, strings.Repeat("x", 3000))
	f.Fuzz(func(t *testing.T, n1, v1, x1, n2, v2, content string) {
		evt := good().Event()
		evt.Content = content
		for i, tag := range evt.Tags { // replace the named tags, keep the rest
			switch tag[0] {
			case n1:
				evt.Tags[i] = nostr.Tag{n1, v1, x1}
			case n2:
				evt.Tags[i] = nostr.Tag{n2, v2}
			}
		}
		r, err := Parse(&evt)
		if err != nil {
			if !errors.Is(err, ErrInvalid) && !errors.Is(err, ErrNoProof) && !errors.Is(err, ErrWrongKind) {
				t.Fatalf("error %v wraps no sentinel", err)
			}
			return
		}
		if r.Rating < MinRating || r.Rating > MaxRating || len(r.Bolt11) > MaxBolt11 || len(r.Preimage) != 64 || len([]rune(r.Text)) > MaxText {
			t.Fatalf("out of bounds: %+v", r)
		}
		// what parses round-trips through Event
		again, err := Parse(ptr(r.Event()))
		if err != nil {
			t.Fatalf("rebuilt review does not parse: %v", err)
		}
		if again != r {
			t.Fatalf("round trip: %+v != %+v", again, r)
		}
	})
}

func ptr(e nostr.Event) *nostr.Event { return &e }
