package relay

import (
	"crypto/rand"
	"encoding/hex"
	"strings"
	"testing"
	"time"

	"github.com/nbd-wtf/go-nostr"

	"github.com/sparecycles/sparecycles/internal/invoice/invoicetest"
	"github.com/sparecycles/sparecycles/internal/relayconn"
	"github.com/sparecycles/sparecycles/nips/nip90"
	"github.com/sparecycles/sparecycles/nips/review"
	"github.com/sparecycles/sparecycles/nips/stream"
)

// paidJob is a job request stored on the relay and a worker's quote for it, whose invoice's
// preimage the test holds: what a customer who paid has.
type paidJob struct {
	job      nostr.Event
	bolt11   string
	preimage string
}

// quotedJob posts customer's job and w's quote with an invoice for it (a stream part's when
// part is valid), and returns them with the invoice's preimage.
func quotedJob(t *testing.T, c *relayconn.Conn, customer, w key, part stream.Part) paidJob {
	t.Helper()
	job := jobRequest(t, customer, time.Now())
	if msg := publish(t, c, job); msg != "" {
		t.Fatalf("job refused: %s", msg)
	}
	pre := make([]byte, 32)
	rand.Read(pre)
	desc := review.Description(job.ID)
	tags := nostr.Tags{{"status", "payment-required"}, {"e", job.ID}, {"p", customer.pk}}
	if part.Valid() {
		desc = stream.InvoiceDescription(job.ID, part)
		tags = append(tags, part.Tag())
	}
	bolt11 := invoicetest.Mint(t, invoicetest.Spec{Msat: 2000, Description: desc, Preimage: pre, HashOnly: part.Valid()})
	quote := w.sign(t, nostr.Event{Kind: nip90.KindFeedback, Tags: append(tags, nostr.Tag{"amount", "2000", bolt11})})
	if msg := publish(t, c, quote); msg != "" {
		t.Fatalf("quote refused: %s", msg)
	}
	return paidJob{job, bolt11, hex.EncodeToString(pre)}
}

// reviewOf is pj's review of worker w, rating stars, as its customer would write it.
func (pj paidJob) reviewOf(w key, stars int) review.Review {
	return review.Review{Job: pj.job.ID, Worker: w.pk, JobKind: pj.job.Kind, Rating: stars, Text: "good work", Bolt11: pj.bolt11, Preimage: pj.preimage}
}

// A review counts only with a proof of payment that holds: forged ones are refused with
// "invalid:" and the reason; paid ones are stored and counted in /api/workers, the newest per
// reviewer and job.
func TestReviews(t *testing.T) {
	tr := startRelay(t, testConfig(t))
	c := tr.connect(t)
	customer, other, w, w2 := newKey(t), newKey(t), newKey(t), newKey(t)
	pj := quotedJob(t, c, customer, w, stream.Part{})

	otherPreimage := func() review.Review {
		rv := pj.reviewOf(w, 5)
		rv.Preimage = strings.Repeat("ab", 32)
		return rv
	}()
	unquoted := pj.reviewOf(w, 5)
	unquoted.Bolt11 = invoicetest.Mint(t, invoicetest.Spec{Msat: 2000, Description: review.Description(pj.job.ID), Preimage: mustHex(t, pj.preimage)})
	unknownJob := pj.reviewOf(w, 5)
	unknownJob.Job = strings.Repeat("7", 64)
	wrongKind := pj.reviewOf(w, 5)
	wrongKind.JobKind = 5100
	bad := pj.reviewOf(w, 5)
	bad.Bolt11 = "lnbcrt1notaninvoice"

	noProof := pj.reviewOf(w, 5).Event()
	noProof.Tags = noProof.Tags[:5] // L, l, e, p, k
	otherLabel := nostr.Event{Kind: review.Kind, Tags: nostr.Tags{{"L", "ugc"}, {"l", "spam", "ugc"}, {"p", w.pk}}}

	for _, tc := range []struct {
		name string
		by   key
		evt  nostr.Event
		want string
	}{
		{"without proof", customer, noProof, "invalid: review: no proof of payment"},
		{"someone else's preimage", customer, otherPreimage.Event(), "invalid: review: the preimage does not hash to the invoice's payment hash"},
		{"a job the reviewer did not post", other, pj.reviewOf(w, 1).Event(), "invalid: review: the job request was not posted by the reviewer"},
		{"a bolt11 the reviewed worker did not issue", customer, pj.reviewOf(w2, 1).Event(), "invalid: review: the reviewed worker did not issue this invoice for this job"},
		{"an invoice nobody quoted", customer, unquoted.Event(), "invalid: review: the reviewed worker did not issue this invoice for this job"},
		{"a job the relay does not hold", customer, unknownJob.Event(), "invalid: review: the job request is not known here"},
		{"k is not the job's kind", customer, wrongKind.Event(), "invalid: review: the job's kind is not the one the k tag names"},
		{"a bolt11 that does not decode", customer, bad.Event(), "invalid: review: the bolt11 does not decode"},
		{"a label of another namespace", customer, otherLabel, "blocked: kind 1985 is accepted here only as a paid review"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if msg := publish(t, c, tc.by.sign(t, tc.evt)); !strings.HasPrefix(msg, tc.want) {
				t.Fatalf("OK reason %q, want %q…", msg, tc.want)
			}
		})
	}
	if row := workerRow(t, tr, w.pk); row.Reviews != 0 {
		t.Fatalf("forged reviews counted: %+v", row)
	}

	// the paid review counts; the same customer's later review of the same job replaces it
	first := pj.reviewOf(w, 4)
	first.CreatedAt = nostr.Now() - 10
	if msg := publish(t, c, customer.sign(t, first.Event())); msg != "" {
		t.Fatalf("paid review refused: %s", msg)
	}
	if row := workerRow(t, tr, w.pk); row.Reviews != 1 || row.Rating != 4 {
		t.Fatalf("after one paid review: reviews %d rating %v, want 1 and 4", row.Reviews, row.Rating)
	}
	if msg := publish(t, c, customer.sign(t, pj.reviewOf(w, 2).Event())); msg != "" {
		t.Fatalf("second review refused: %s", msg)
	}
	if row := workerRow(t, tr, w.pk); row.Reviews != 1 || row.Rating != 2 {
		t.Fatalf("after a newer review of the same job: reviews %d rating %v, want 1 and 2", row.Reviews, row.Rating)
	}

	// a stream part's invoice (description hash, naming the part) proves as well; the mean
	// rounds to one decimal
	part := quotedJob(t, c, other, w, stream.Part{K: 2, N: 3})
	if msg := publish(t, c, other.sign(t, part.reviewOf(w, 5).Event())); msg != "" {
		t.Fatalf("review of a paid stream part refused: %s", msg)
	}
	third := quotedJob(t, c, newKey(t), w, stream.Part{})
	if msg := publish(t, c, newKey(t).sign(t, third.reviewOf(w, 4).Event())); !strings.HasPrefix(msg, "invalid: review: the job request was not posted") {
		t.Fatalf("a stranger reviewing a third job: %q", msg)
	}
	var doc WorkersResponse
	getJSON(t, tr.http+"/api/workers", nil, &doc)
	var row WorkerView
	for _, v := range doc.Workers {
		if v.PubKey == w.pk {
			row = v
		}
	}
	if row.Reviews != 2 || row.Rating != 3.5 {
		t.Fatalf("/api/workers row %+v: want reviews 2, rating 3.5", row)
	}
	if row := workerRow(t, tr, w2.pk); row.Reviews != 0 {
		t.Fatalf("a worker reviewed by nobody: %+v", row)
	}
}

func workerRow(t *testing.T, tr *testRelay, pk string) WorkerView {
	t.Helper()
	for _, v := range tr.r.Workers(t.Context(), maxWorkersShown).Workers {
		if v.PubKey == pk {
			return v
		}
	}
	return WorkerView{}
}

func mustHex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestReviewRating(t *testing.T) {
	for _, tc := range []struct {
		s    reviewStats
		want float64
	}{
		{reviewStats{}, 0},
		{reviewStats{count: 3, sum: 14}, 4.7},
		{reviewStats{count: 3, sum: 13}, 4.3},
		{reviewStats{count: 2, sum: 9}, 4.5},
		{reviewStats{count: 1, sum: 5}, 5},
	} {
		if got := tc.s.rating(); got != tc.want {
			t.Errorf("%+v: rating %v, want %v", tc.s, got, tc.want)
		}
	}
}
