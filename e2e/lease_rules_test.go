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
	"github.com/sparecycles/sparecycles/internal/testimage"
	"github.com/sparecycles/sparecycles/internal/testrelay"
	"github.com/sparecycles/sparecycles/nips/lease"
	"github.com/sparecycles/sparecycles/nips/nip90"
	"github.com/sparecycles/sparecycles/relay"
	"github.com/sparecycles/sparecycles/worker"
)

// heldInput serves a PNG of text. The worker fetches it twice, to price the job and, once
// paid, to run it; the second fetch waits for release, and held is closed when it arrives: the
// job is paid and the worker has not claimed it yet.
func heldInput(t *testing.T, text string) (url string, held <-chan struct{}, release func()) {
	t.Helper()
	png, err := testimage.Render(28, text)
	if err != nil {
		t.Fatal(err)
	}
	var fetches atomic.Int32
	h := make(chan struct{})
	rel := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		if fetches.Add(1) == 2 {
			close(h)
			select {
			case <-rel:
			case <-r.Context().Done():
				return
			}
		}
		rw.Header().Set("Content-Type", "image/png")
		rw.Write(png)
	}))
	var once sync.Once
	release = func() { once.Do(func() { close(rel) }) }
	t.Cleanup(srv.Close)
	t.Cleanup(release)
	return srv.URL + "/page.png", h, release
}

type doResult struct {
	out client.Outcome
	err error
}

// paidAndHeld posts an OCR job through c, and returns once it is paid and the worker waits
// for its input: the job's request as the relay stores it, and the channel Do answers on.
func paidAndHeld(t *testing.T, c *client.Client, url, img string, held <-chan struct{}) (nostr.Event, <-chan doResult) {
	t.Helper()
	done := make(chan doResult, 1)
	go func() {
		out, err := c.Do(context.Background(), ocrJob(img, 10_000), nil)
		done <- doResult{out, err}
	}()
	select {
	case <-held:
	case r := <-done:
		t.Fatalf("job ended before the paid worker ran it: %+v, %v", r.out, r.err)
	case <-time.After(90 * time.Second):
		t.Fatal("the worker never came back for the paid job's input")
	}
	reqs := testrelay.Query(t, testrelay.Dial(t, url), nostr.Filter{Kinds: []int{5000}})
	if len(reqs) != 1 {
		t.Fatalf("%d job requests on the relay, want 1", len(reqs))
	}
	return *reqs[0], done
}

func waitDo(t *testing.T, done <-chan doResult) doResult {
	t.Helper()
	select {
	case r := <-done:
		return r
	case <-time.After(120 * time.Second):
		t.Fatal("the client never heard how the paid job ended")
	}
	return doResult{}
}

// A stranger who posts a result for a job another worker quoted and was paid for is refused
// (blocked:), and does not end the job: the paid worker claims it, delivers, and the customer
// gets that worker's text.
func TestStrangerResultDoesNotBlockPaidWorker(t *testing.T) {
	r, url := startRelay(t)
	data := startLedgerWallet(t, url)
	workerURI := connect(t, data, url, "worker", 0, 0)
	clientURI := connect(t, data, url, "client", 100, 0)
	w := startPaidWorker(t, url, workerURI, pricedModels(t, 4000, 0, ""))
	c := newClient(t, url, clientURI)
	img, held, release := heldInput(t, "the paid worker")
	req, done := paidAndHeld(t, c, url, img, held)

	stranger := nostr.GeneratePrivateKey()
	forged := (&nip90.JobResult{Kind: 6000, CreatedAt: nostr.Now(), Request: req.String(), JobID: req.ID, Customer: req.PubKey, Content: "forged"}).Event()
	if err := forged.Sign(stranger); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ok, err := testrelay.Dial(t, url).Publish(ctx, forged)
	if err != nil {
		t.Fatal(err)
	}
	if ok.Accepted || !strings.HasPrefix(ok.Reason, "blocked: ") {
		t.Fatalf("stranger's result on a paid job: accepted %v, %q; want blocked:", ok.Accepted, ok.Reason)
	}
	release()

	res := waitDo(t, done)
	if res.err != nil || strings.ToLower(strings.TrimSpace(res.out.Result)) != "the paid worker" || res.out.Worker != w.PubKey() {
		t.Fatalf("outcome %+v, %v; want the paid worker's text", res.out, res.err)
	}
	if j, _ := r.Jobs().Lookup(req.ID); j.ResultBy != w.PubKey() {
		t.Fatalf("relay job %+v, want the result by the paid worker", j)
	}
	if debts, err := w.Debts(context.Background()); err != nil || len(debts) != 0 {
		t.Fatalf("worker debts %+v (%v), want none", debts, err)
	}
}

// A paid job the worker cannot deliver (here a stranger took the lease between payment and
// the worker's claim) is not dropped in silence. Paid first (prepay), the customer gets error
// feedback saying it paid, was not delivered and is owed the amount, and the worker records the
// debt. Paid by escrow, the locked payment is cancelled: the customer is told the reason and
// that it was refunded, and its balance is whole again.
func TestPaidButUndeliverableIsOwed(t *testing.T) {
	for _, tc := range []struct {
		by       client.PayBy
		says     []string
		debts    int
		paidMsat int64
	}{
		{client.PayByPrepay, []string{"paid job not delivered: ", "4,000 msat owed to you, recorded by the worker"}, 1, 4000},
		{client.PayByEscrow, []string{"the locked payment was refunded"}, 0, 0},
	} {
		t.Run(string(tc.by), func(t *testing.T) {
			_, url := startRelay(t)
			data := startLedgerWallet(t, url)
			workerURI := connect(t, data, url, "worker", 0, 0)
			clientURI := connect(t, data, url, "client", 100, 0)
			w := startPaidWorker(t, url, workerURI, pricedModels(t, 4000, 0, ""))
			c := newClientPaying(t, url, clientURI, tc.by)
			img, held, release := heldInput(t, "never delivered")
			req, done := paidAndHeld(t, c, url, img, held)

			stranger := nostr.GeneratePrivateKey()
			strangerPK, _ := nostr.GetPublicKey(stranger)
			grab := (&nip90.JobFeedback{CreatedAt: nostr.Now(), JobID: req.ID, Customer: req.PubKey, Status: nip90.StatusProcessing,
				Extra: nostr.Tags{lease.Tag(5 * time.Minute)}}).Event()
			if err := grab.Sign(stranger); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if ok, err := testrelay.Dial(t, url).Publish(ctx, grab); err != nil || !ok.Accepted {
				t.Fatalf("stranger's claim: %+v %v", ok, err)
			}
			release()

			res := waitDo(t, done)
			if !errors.Is(res.err, client.ErrJobFailed) {
				t.Fatalf("outcome %+v, %v; want the job failed", res.out, res.err)
			}
			for _, want := range append([]string{"leased by " + strangerPK}, tc.says...) {
				if !strings.Contains(res.err.Error(), want) {
					t.Fatalf("the customer was told %q; want it to say %q", res.err, want)
				}
			}
			debts, err := w.Debts(context.Background())
			if err != nil || len(debts) != tc.debts {
				t.Fatalf("worker debts %+v (%v), want %d", debts, err, tc.debts)
			}
			if tc.debts > 0 {
				if d := debts[0]; d.JobID != req.ID || d.Customer != req.PubKey || d.AmountMsat != 4000 || !strings.Contains(d.Reason, "leased by") {
					t.Fatalf("debt %+v, want 4000 msat for job %s to %s", d, req.ID, req.PubKey)
				}
			}
			if b := balance(t, clientURI); b != 100_000-tc.paidMsat {
				t.Fatalf("client balance %d, want %d paid", b, tc.paidMsat)
			}
		})
	}
}

// A paid job posted to two relays that both coordinate leases is delivered to both: the worker
// claims on the second as well, which takes a quoted job's result only from a pubkey that
// claimed it there.
func TestPaidJobOnTwoLeaseRelays(t *testing.T) {
	r1, u1 := startRelay(t)
	r2, u2 := startRelay(t)
	data := startLedgerWallet(t, u1)
	workerURI := connect(t, data, u1, "worker", 0, 0)
	clientURI := connect(t, data, u1, "client", 100, 0)
	w := startWorkerWith(t, func(cfg *worker.Config) {
		cfg.NWC, cfg.Models, cfg.PaymentPoll = workerURI.Encode(), pricedModels(t, 4000, 0, ""), time.Second
	}, u1, u2)
	c, err := client.Open(context.Background(), client.Config{
		Relays: []string{u1, u2}, NWC: clientURI.Encode(), Data: t.TempDir(), SecretKey: nostr.GeneratePrivateKey(),
		QuoteWindow: time.Second, Timeout: 90 * time.Second,
	}, testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	out, err := c.Do(context.Background(), ocrJob(servePNG(t, "on both relays"), 10_000), nil)
	if err != nil || strings.ToLower(strings.TrimSpace(out.Result)) != "on both relays" {
		t.Fatalf("outcome %+v, %v", out, err)
	}
	for i, r := range []*relay.Relay{r1, r2} {
		// the client returns on the first result; the worker publishes to the other relay after
		var j relay.Job
		var ok bool
		for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			if j, ok = r.Jobs().Lookup(out.Job); ok && j.ResultBy != "" {
				break
			}
		}
		if !ok || j.ResultBy != w.PubKey() || len(j.Quotes) == 0 {
			t.Fatalf("relay %d: job %+v (found %v), want it quoted and done by the worker", i+1, j, ok)
		}
	}
}
