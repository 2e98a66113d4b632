package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nbd-wtf/go-nostr"

	"github.com/sparecycles/sparecycles/client"
	"github.com/sparecycles/sparecycles/internal/testrelay"
	"github.com/sparecycles/sparecycles/nips/escrow"
	"github.com/sparecycles/sparecycles/nips/review"
	"github.com/sparecycles/sparecycles/relay"
)

// A paid job (escrow, then prepay) is reviewed through the client: the relay checks the proof (the preimage of the
// worker's invoice for a job the reviewer posted) and /api/workers counts the review with its
// rating, and so does the client's view of the workers. Forged reviews are refused with
// "invalid:": the customer's own with a wrong preimage, and a stranger's that reuses the
// customer's bolt11 and preimage.
func TestPaidReview(t *testing.T) {
	_, url := startRelay(t)
	data := startLedgerWallet(t, url)
	workerURI := connect(t, data, url, "worker", 0, 0)
	clientURI := connect(t, data, url, "client", 1000, 500)
	w := startPaidWorker(t, url, workerURI, pricedModels(t, 2000, 1000, ""))
	sk := nostr.GeneratePrivateKey()
	c, err := client.Open(context.Background(), client.Config{
		Relays: []string{url}, NWC: clientURI.Encode(), Data: t.TempDir(), SecretKey: sk,
		QuoteWindow: time.Second, Timeout: 90 * time.Second,
	}, testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := c.Do(ctx, ocrJob(servePNG(t, "worth a review"), 50_000), nil)
	if err != nil {
		t.Fatalf("job: %v", err)
	}
	if out.Worker != w.PubKey() || out.AmountMsat == 0 || out.Scheme != escrow.SchemeEscrow {
		t.Fatalf("outcome %+v: want a paid job done by the worker", out)
	}
	ps, err := c.Payments(ctx, out.Job)
	if err != nil || len(ps) != 1 || ps[0].State != client.PayPaid {
		t.Fatalf("payments %+v %v", ps, err)
	}
	paid := ps[0]

	conn := testrelay.Dial(t, url)
	refused := func(who, sk string, rv review.Review, want string) {
		t.Helper()
		evt := rv.Event()
		if err := evt.Sign(sk); err != nil {
			t.Fatal(err)
		}
		ok, err := conn.Publish(ctx, evt)
		if err != nil {
			t.Fatalf("%s: publish: %v", who, err)
		}
		if ok.Accepted || !strings.HasPrefix(ok.Reason, want) {
			t.Fatalf("%s: OK %v %q, want a refusal starting %q", who, ok.Accepted, ok.Reason, want)
		}
	}
	proof := review.Review{Job: out.Job, Worker: w.PubKey(), JobKind: 5000, Rating: 1, Bolt11: paid.Bolt11, Preimage: paid.Preimage}
	wrong := proof
	wrong.Preimage = strings.Repeat("42", 32)
	refused("the customer with a wrong preimage", sk, wrong, "invalid: review: the preimage does not hash to the invoice's payment hash")
	refused("a stranger with the customer's proof", nostr.GeneratePrivateKey(), proof, "invalid: review: the job request was not posted by the reviewer")
	noProof := proof
	noProof.Bolt11 = "lnbcrt1fake"
	refused("the customer with a bolt11 that is not an invoice", sk, noProof, "invalid: review: the bolt11 does not decode")
	if row, _ := awaitWorkerRow(t, url, w.PubKey(), 10*time.Second, "worker listed", func(v relay.WorkerView) bool { return v.PubKey != "" }); row.Reviews != 0 {
		t.Fatalf("forged reviews counted: %+v", row)
	}

	reviewed, err := c.Review(ctx, out.Job, 5, "read every word right")
	if err != nil {
		t.Fatalf("review: %v (answers %+v)", err, reviewed.Answers)
	}
	if len(reviewed.Answers) != 1 || !reviewed.Answers[0].Accepted || reviewed.Review.Worker != w.PubKey() {
		t.Fatalf("reviewed %+v", reviewed)
	}
	// OK true means stored, and /api/workers reads the store: no wait needed
	row, _ := awaitWorkerRow(t, url, w.PubKey(), 10*time.Second, "listed", func(v relay.WorkerView) bool { return v.PubKey != "" })
	if row.Reviews != 1 || row.Rating != 5 {
		t.Fatalf("/api/workers row: reviews %d, rating %v; want 1 and 5", row.Reviews, row.Rating)
	}

	// a second customer pays by plain prepay (the first paid by escrow): its review counts too
	c2 := newClientPaying(t, url, clientURI, client.PayByPrepay)
	out2, err := c2.Do(ctx, ocrJob(servePNG(t, "second opinion"), 50_000), nil)
	if err != nil || out2.Scheme != escrow.SchemePrepay {
		t.Fatalf("prepaid job: %+v %v", out2, err)
	}
	if _, err := c2.Review(ctx, out2.Job, 4, ""); err != nil {
		t.Fatalf("review of the prepaid job: %v", err)
	}
	row, _ = awaitWorkerRow(t, url, w.PubKey(), 10*time.Second, "listed", func(v relay.WorkerView) bool { return v.PubKey != "" })
	if row.Reviews != 2 || row.Rating != 4.5 {
		t.Fatalf("/api/workers row: reviews %d, rating %v; want 2 and 4.5", row.Reviews, row.Rating)
	}
	presences, vouched := client.Presences(ctx, []string{url}, testLog(t))
	if p := presences[w.PubKey()]; !vouched || p.Reviews != 2 || p.Rating != 4.5 {
		t.Fatalf("the client's view of the worker: %+v (vouched %v)", p, vouched)
	}
}
