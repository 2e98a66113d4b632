package e2e

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nbd-wtf/go-nostr"

	"github.com/sparecycles/sparecycles/client"
	"github.com/sparecycles/sparecycles/internal/invoice"
	"github.com/sparecycles/sparecycles/internal/relayconn"
	"github.com/sparecycles/sparecycles/internal/testimage"
	"github.com/sparecycles/sparecycles/internal/testrelay"
	"github.com/sparecycles/sparecycles/nips/heartbeat"
	"github.com/sparecycles/sparecycles/nips/nip47"
	"github.com/sparecycles/sparecycles/nips/nip90"
	"github.com/sparecycles/sparecycles/nips/postpay"
	"github.com/sparecycles/sparecycles/worker"
)

// sniper is a key with a wallet of its own that answers job requests the moment it sees them,
// without doing any work.
type sniper struct {
	t      testing.TB
	sk, pk string
	conn   *relayconn.Conn
	wallet *nip47.Client

	once    sync.Once
	first   chan struct{} // closed once the sniper's first answer is stored
	lastJob atomic.Value  // the job it answered last

	refusable bool         // the relay may refuse what it publishes (ours does, results)
	refused   atomic.Int64 // results the relay refused with blocked:
}

// startSniper subscribes to kind 5000 requests, and to acceptances addressed to the sniper, on
// url; answer is called for each, on one goroutine, until the test ends.
func startSniper(t testing.TB, url string, uri nip47.URI, answer func(ctx context.Context, s *sniper, evt *nostr.Event)) *sniper {
	t.Helper()
	s := &sniper{t: t, sk: nostr.GeneratePrivateKey(), conn: testrelay.Dial(t, url), first: make(chan struct{})}
	s.pk, _ = nostr.GetPublicKey(s.sk)
	pool := relayconn.NewPool(uri.Relays)
	t.Cleanup(pool.Close)
	s.wallet = nip47.NewClient(uri, pool)
	ctx, cancel := context.WithCancel(context.Background())
	sub, err := s.conn.Subscribe(ctx, nostr.Filter{Kinds: []int{5000}}, nostr.Filter{Kinds: []int{nip90.KindFeedback}, Tags: nostr.TagMap{"p": {s.pk}}})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-sub.EOSE: // live from here on
	case <-time.After(30 * time.Second):
		t.Fatal("no EOSE from the relay")
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case evt := <-sub.Events:
				answer(ctx, s, evt)
			case <-ctx.Done():
				return
			}
		}
	}()
	t.Cleanup(func() { cancel(); wg.Wait() })
	return s
}

// finished records that the sniper's answer to job is stored.
func (s *sniper) finished(job string) {
	s.lastJob.Store(job)
	s.once.Do(func() { close(s.first) })
}

// invoice makes an invoice of the sniper's own wallet, bound to job as a worker's would be.
func (s *sniper) invoice(ctx context.Context, job string, msat int64) string {
	tx, err := s.wallet.MakeInvoice(ctx, nip47.MakeInvoiceParams{Amount: msat, Description: invoice.Description(job)})
	if err != nil {
		if ctx.Err() == nil {
			s.t.Errorf("sniper invoice: %v", err)
		}
		return ""
	}
	return tx.Invoice
}

func (s *sniper) publish(ctx context.Context, evt nostr.Event) {
	evt.CreatedAt = nostr.Now()
	if err := evt.Sign(s.sk); err != nil {
		s.t.Error(err)
		return
	}
	ok, err := s.conn.Publish(ctx, evt)
	if err == nil && !ok.Accepted && s.refusable && nip90.IsResultKind(evt.Kind) && strings.HasPrefix(ok.Reason, "blocked:") {
		s.refused.Add(1)
		return
	}
	if (err != nil || !ok.Accepted) && ctx.Err() == nil {
		s.t.Errorf("sniper publish kind %d: %v %s", evt.Kind, err, ok.Reason)
	}
}

// result publishes a fake result for req carrying an invoice for msat.
func (s *sniper) result(ctx context.Context, req *nostr.Event, msat int64) {
	r := nip90.JobResult{Kind: 6000, JobID: req.ID, Customer: req.PubKey, Content: "sniped",
		Amount: &nip90.Amount{Msat: msat, Bolt11: s.invoice(ctx, req.ID, msat)}}
	s.publish(ctx, r.Event())
}

// gatedPNG serves a PNG of text; fetch n (counted from 1) first waits for gate(n), when gate
// returns a channel. The worker fetches an input to price it and again to run it once chosen,
// so a gate orders the worker after the sniper without a sleep.
func gatedPNG(t testing.TB, text string, gate func(n int32) <-chan struct{}) string {
	png, err := testimage.Render(28, text)
	if err != nil {
		t.Fatal(err)
	}
	var fetches atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		if ch := gate(fetches.Add(1)); ch != nil {
			select {
			case <-ch:
			case <-r.Context().Done():
				return
			}
		}
		rw.Header().Set("Content-Type", "image/png")
		rw.Write(png)
	}))
	t.Cleanup(srv.Close)
	return srv.URL + "/page.png"
}

// A sniper answers every job at once, before the real worker; the client pays only the worker
// it chose, exactly its price, and reads only that worker's text. Each case runs on a plain
// NIP-90 relay, where the sniper's result is stored and the client ignores it, and on ours,
// which refuses it: the request carries a bid and the sniper never held the job's lease.
func TestSniperIsNeverPaid(t *testing.T) {
	const bid, price = 50_000, 3000
	tests := []struct {
		name    string
		payment string // the real worker's
		// snipe answers one request (or an acceptance addressed to the sniper)
		snipe func(ctx context.Context, s *sniper, evt *nostr.Event)
	}{
		{"fake result with an invoice for the whole bid", worker.PayBefore, func(ctx context.Context, s *sniper, evt *nostr.Event) {
			if evt.Kind == 5000 {
				s.result(ctx, evt, bid)
				s.finished(evt.ID)
			}
		}},
		{"fake post-pay offer and an unasked result", worker.PayAfter, func(ctx context.Context, s *sniper, evt *nostr.Event) {
			if evt.Kind == 5000 {
				o := postpay.Offer(evt.ID, evt.PubKey, price+1000)
				s.publish(ctx, o.Event())
				s.result(ctx, evt, price+1000)
				s.finished(evt.ID)
			}
		}},
		{"quote whose invoice asks more than its amount, and a result", worker.PayBefore, func(ctx context.Context, s *sniper, evt *nostr.Event) {
			if evt.Kind == 5000 {
				fb := nip90.JobFeedback{JobID: evt.ID, Customer: evt.PubKey, Status: nip90.StatusPaymentRequired,
					Amount: &nip90.Amount{Msat: 1, Bolt11: s.invoice(ctx, evt.ID, bid)}}
				s.publish(ctx, fb.Event())
				s.result(ctx, evt, bid)
				s.finished(evt.ID)
			}
		}},
	}
	for _, tc := range tests {
		for _, ours := range []bool{false, true} {
			name := tc.name + "/plain relay"
			if ours {
				name = tc.name + "/our relay"
			}
			t.Run(name, func(t *testing.T) { sniperCase(t, tc.payment, tc.snipe, ours, bid, price) })
		}
	}
}

// sniperCase runs one TestSniperIsNeverPaid case on a plain NIP-90 relay (the sniper's result
// is stored and the client ignores it) or on ours (the relay refuses it: the job carries a bid
// and the sniper never held its lease).
func sniperCase(t *testing.T, payment string, snipe func(ctx context.Context, s *sniper, evt *nostr.Event), ours bool, bid, price int64) {
	var url string
	if ours {
		_, url = startRelay(t)
	} else {
		url = testrelay.Start(t)
	}
	data := startLedgerWallet(t, url)
	workerURI := connect(t, data, url, "worker", 0, 0)
	clientURI := connect(t, data, url, "client", 100, 0)
	sniperURI := connect(t, data, url, "sniper", 0, 0)
	w := startPaidWorker(t, url, workerURI, pricedModels(t, price, 0, payment))
	s := startSniper(t, url, sniperURI, snipe)
	s.refusable = ours
	c := newClient(t, url, clientURI)
	img := gatedPNG(t, "the real text", func(n int32) <-chan struct{} {
		if n < 2 {
			return nil // priced at once
		}
		return s.first // run only after the sniper has answered: its result comes first
	})
	before := [3]int64{balance(t, workerURI), balance(t, clientURI), balance(t, sniperURI)}

	out, err := c.Do(context.Background(), ocrJob(img, bid), nil)
	if err != nil {
		t.Fatalf("job: %v (outcome %+v)", err, out)
	}
	if strings.ToLower(strings.TrimSpace(out.Result)) != "the real text" || out.Worker != w.PubKey() || out.AmountMsat != price {
		t.Fatalf("outcome %+v, want the real worker's text, paid %d msat", out, price)
	}
	switch {
	case ours && s.refused.Load() < 1:
		t.Fatalf("our relay refused %d of the sniper's results, want its result blocked", s.refused.Load())
	case !ours && out.IgnoredResults < 1:
		t.Fatalf("ignored %d results, want the sniper's counted", out.IgnoredResults)
	}
	after := [3]int64{balance(t, workerURI), balance(t, clientURI), balance(t, sniperURI)}
	if after[0]-before[0] != price || before[1]-after[1] != price || after[2] != before[2] {
		t.Fatalf("balances (worker, client, sniper) %v → %v: want the worker paid %d msat by the client, the sniper nothing", before, after, price)
	}
	if id, _ := s.lastJob.Load().(string); id != out.Job {
		t.Fatalf("the sniper answered job %q, the client posted %s", id, out.Job)
	}
}

// A sniper offers to run the job post-pay for less than the real worker: the client accepts
// the cheaper offer, but the sniper's result asks the whole bid. The client refuses it: an
// invoice above the offer is never paid, and nothing moves.
func TestInvoiceAboveOfferRefused(t *testing.T) {
	const bid, price = 50_000, 3000
	url := testrelay.Start(t)
	data := startLedgerWallet(t, url)
	workerURI := connect(t, data, url, "worker", 0, 0)
	clientURI := connect(t, data, url, "client", 100, 0)
	sniperURI := connect(t, data, url, "sniper", 0, 0)
	startPaidWorker(t, url, workerURI, pricedModels(t, price, 0, worker.PayBefore))
	var accepted atomic.Int32
	s := startSniper(t, url, sniperURI, func(ctx context.Context, s *sniper, evt *nostr.Event) {
		switch evt.Kind {
		case 5000:
			o := postpay.Offer(evt.ID, evt.PubKey, 1000)
			s.publish(ctx, o.Event())
			s.finished(evt.ID)
		case nip90.KindFeedback:
			a, err := postpay.ParseAcceptance(evt)
			if err != nil || a.Worker != s.pk {
				return
			}
			accepted.Add(1)
			s.result(ctx, &nostr.Event{ID: a.JobID, Kind: 5000, PubKey: a.Customer}, bid)
		}
	})
	// a heartbeat costs a stranger nothing: the sniper looks as live as the real worker, so
	// its cheaper offer is the one chosen, and the invoice check is what protects the customer
	beat := heartbeat.Beat{Identifier: "sniper", Expiration: nostr.Now() + 900, Status: heartbeat.StatusReady, Queue: 0, Kinds: []int{5000}}
	s.publish(context.Background(), beat.Event())
	c := newClient(t, url, clientURI)
	// the real worker prices the job only once the sniper's cheaper offer is out
	img := gatedPNG(t, "never read", func(int32) <-chan struct{} { return s.first })
	before := [3]int64{balance(t, workerURI), balance(t, clientURI), balance(t, sniperURI)}
	out, err := c.Do(context.Background(), ocrJob(img, bid), nil)
	if !errors.Is(err, client.ErrRefusedInvoice) || !strings.Contains(err.Error(), "the offer was 1000 msat") {
		t.Fatalf("err = %v (outcome %+v), want the sniper's invoice refused", err, out)
	}
	if accepted.Load() != 1 || out.AmountMsat != 0 {
		t.Fatalf("acceptances %d, outcome %+v", accepted.Load(), out)
	}
	after := [3]int64{balance(t, workerURI), balance(t, clientURI), balance(t, sniperURI)}
	if after != before {
		t.Fatalf("balances (worker, client, sniper) %v → %v, want nothing moved", before, after)
	}
}

// No bid means free workers only: a priced worker's quote or post-pay offer is refused with a
// reason naming the missing bid, and nothing is paid.
func TestNoBidIsFreeOnly(t *testing.T) {
	for _, payment := range []string{worker.PayBefore, worker.PayAfter} {
		t.Run(payment, func(t *testing.T) {
			_, url := startRelay(t)
			data := startLedgerWallet(t, url)
			workerURI := connect(t, data, url, "worker", 0, 0)
			clientURI := connect(t, data, url, "client", 100, 0)
			w := startPaidWorker(t, url, workerURI, pricedModels(t, 1056, 0, payment))
			c := newClient(t, url, clientURI)
			out, err := c.Do(context.Background(), ocrJob(servePNG(t, "not free"), 0), nil)
			if !errors.Is(err, client.ErrNoOffer) || !strings.Contains(err.Error(), "no bid was given (no bid: free workers only)") ||
				!strings.Contains(err.Error(), "1056 msat") {
				t.Fatalf("err = %v (outcome %+v)", err, out)
			}
			if b := balance(t, clientURI); b != 100_000 || out.AmountMsat != 0 {
				t.Fatalf("client balance %d, outcome %+v: want nothing paid", b, out)
			}
			if w.Stats().Executed != 0 {
				t.Fatalf("the worker ran %d jobs nobody chose", w.Stats().Executed)
			}
		})
	}
}
