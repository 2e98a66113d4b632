package client

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"strings"
	"testing"

	"github.com/fiatjaf/khatru"
	"github.com/nbd-wtf/go-nostr"
	"github.com/rs/zerolog"

	"github.com/sparecycles/sparecycles/internal/invoice"
	"github.com/sparecycles/sparecycles/internal/invoice/invoicetest"
	"github.com/sparecycles/sparecycles/internal/testrelay"
	"github.com/sparecycles/sparecycles/nips/nip90"
	"github.com/sparecycles/sparecycles/nips/review"
)

// Review takes its proof from the payment store, signs with the customer's key and reports
// each relay's answer; it refuses locally without a settled payment or for another's job.
func TestReview(t *testing.T) {
	open := testrelay.Start(t)
	// a relay that refuses every review, as a relay that finds the proof wanting does
	refusing := testrelay.StartWith(t, func(r *khatru.Relay) {
		r.RejectEvent = append(r.RejectEvent, func(_ context.Context, evt *nostr.Event) (bool, string) {
			return evt.Kind == review.Kind, "invalid: review: not here"
		})
	})
	sk := nostr.GeneratePrivateKey()
	c, err := Open(t.Context(), Config{Relays: []string{open, refusing}, Data: t.TempDir(), SecretKey: sk}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := t.Context()
	job, err := c.Post(ctx, nip90.JobRequest{Kind: 5000, Inputs: []nip90.Input{{Value: "hello", Type: nip90.InputText}}, BidMsat: 5000})
	if err != nil {
		t.Fatal(err)
	}
	worker := mustPub(nostr.GeneratePrivateKey())

	if _, err := c.Review(ctx, job.ID, 4, "fine"); !errors.Is(err, ErrNoPaidPayment) {
		t.Fatalf("review without a payment: %v, want ErrNoPaidPayment", err)
	}
	pre := make([]byte, 32)
	rand.Read(pre)
	bolt11 := invoicetest.Mint(t, invoicetest.Spec{Msat: 2000, Description: invoice.Description(job.ID), Preimage: pre})
	inv, err := invoice.Decode(bolt11)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.store.begin(ctx, Payment{PaymentHash: inv.PaymentHash, JobID: job.ID, Worker: worker, Bolt11: bolt11, AmountMsat: 2000}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Review(ctx, job.ID, 4, "fine"); !errors.Is(err, ErrNoPaidPayment) {
		t.Fatalf("review of a payment still in progress: %v, want ErrNoPaidPayment", err)
	}
	if err := c.store.finish(ctx, inv.PaymentHash, PayPaid, hex.EncodeToString(pre), 0); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		rating int
		text   string
	}{{0, ""}, {6, ""}, {3, strings.Repeat("x", review.MaxText+1)}} {
		if _, err := c.Review(ctx, job.ID, tc.rating, tc.text); !errors.Is(err, ErrBadReview) {
			t.Fatalf("rating %d, %d characters: %v, want ErrBadReview", tc.rating, len(tc.text), err)
		}
	}

	out, err := c.Review(ctx, job.ID, 4, "fine")
	if err != nil {
		t.Fatalf("review: %v", err)
	}
	rv, err := review.Parse(&out.Event)
	if err != nil || !out.Event.CheckID() {
		t.Fatalf("published review does not parse: %v", err)
	}
	if rv.PubKey != c.PubKey() || rv.Job != job.ID || rv.Worker != worker || rv.JobKind != 5000 || rv.Rating != 4 ||
		rv.Text != "fine" || rv.Bolt11 != bolt11 || rv.Preimage != hex.EncodeToString(pre) {
		t.Fatalf("review %+v", rv)
	}
	if len(out.Answers) != 2 || !out.Answers[0].Accepted || out.Answers[1].Accepted || out.Answers[1].Reason != "invalid: review: not here" {
		t.Fatalf("answers %+v: want the first relay's OK and the second's refusal", out.Answers)
	}

	// refused everywhere: an error, with every relay's answer
	only, err := Open(ctx, Config{Relays: []string{refusing}, Data: c.cfg.Data, SecretKey: sk}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer only.Close()
	if out, err := only.Review(ctx, job.ID, 2, ""); !errors.Is(err, ErrReviewRefused) || !strings.Contains(err.Error(), "invalid: review: not here") || len(out.Answers) != 1 {
		t.Fatalf("refused everywhere: %v %+v", err, out.Answers)
	}

	// another key cannot review this customer's job, even holding its payment
	thief, err := Open(ctx, Config{Relays: []string{open}, Data: c.cfg.Data, SecretKey: nostr.GeneratePrivateKey()}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer thief.Close()
	if _, err := thief.Review(ctx, job.ID, 1, ""); !errors.Is(err, ErrNotYourJob) {
		t.Fatalf("review of another's job: %v, want ErrNotYourJob", err)
	}
}
