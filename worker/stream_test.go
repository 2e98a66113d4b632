package worker

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fiatjaf/khatru"
	"github.com/nbd-wtf/go-nostr"

	"github.com/sparecycles/sparecycles/internal/relayconn"
	"github.com/sparecycles/sparecycles/internal/testimage"
	"github.com/sparecycles/sparecycles/internal/testrelay"
	"github.com/sparecycles/sparecycles/nips/escrow"
	"github.com/sparecycles/sparecycles/nips/nip47"
	"github.com/sparecycles/sparecycles/nips/nip90"
	"github.com/sparecycles/sparecycles/nips/stream"
)

// streamPages are the texts of the test documents' pages, one part each.
var streamPages = []string{"page one", "page two", "page three"}

// pageSite serves one PNG per text at /page-<k>.png. The worker fetches a page twice, to price
// it and, once paid, to run it; when gate is k, page k's second fetch (and any after) waits
// for release (held is closed when it arrives).
func pageSite(t *testing.T, texts []string, gate int) (urls []string, held <-chan struct{}, release func()) {
	t.Helper()
	pngs := map[string][]byte{}
	for i, text := range texts {
		png, err := testimage.Render(28, text)
		if err != nil {
			t.Fatal(err)
		}
		pngs["/page-"+strconv.Itoa(i+1)+".png"] = png
	}
	var mu sync.Mutex
	fetches := map[string]int{}
	h, rel := make(chan struct{}), make(chan struct{})
	gated := "/page-" + strconv.Itoa(gate) + ".png"
	srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		png, ok := pngs[r.URL.Path]
		if !ok {
			http.NotFound(rw, r)
			return
		}
		mu.Lock()
		fetches[r.URL.Path]++
		n := fetches[r.URL.Path]
		mu.Unlock()
		if r.URL.Path == gated && n >= 2 {
			if n == 2 {
				close(h)
			}
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
	for i := range texts {
		urls = append(urls, srv.URL+"/page-"+strconv.Itoa(i+1)+".png")
	}
	return urls, h, release
}

// postStream publishes an OCR request with one input per URL, accepting the payment schemes
// given (none: no payment tag), with extra tags.
func postStream(t *testing.T, c customer, conn *relayconn.Conn, urls []string, schemes []string, extra ...nostr.Tag) nostr.Event {
	t.Helper()
	tags := nostr.Tags{}
	for _, u := range urls {
		tags = append(tags, nostr.Tag{"i", u, "url"})
	}
	tags = append(tags, nostr.Tag{"output", "text/plain"})
	if len(schemes) > 0 {
		tags = append(tags, escrow.PaymentSchemesTag(schemes...))
	}
	tags = append(tags, extra...)
	return c.post(t, 5000, tags, conn)
}

// deleteRequest publishes the customer's NIP-09 deletion of job.
func deleteRequest(t *testing.T, c customer, conn *relayconn.Conn, job nostr.Event) {
	t.Helper()
	evt := nostr.Event{Kind: nostr.KindDeletion, CreatedAt: nostr.Now(), Tags: nostr.Tags{{"e", job.ID}, {"k", strconv.Itoa(job.Kind)}}}
	if err := evt.Sign(c.sk); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if ok, err := conn.Publish(ctx, evt); err != nil || !ok.Accepted {
		t.Fatalf("deletion: %+v %v", ok, err)
	}
}

// partSeen is a part's quote or the part itself, as the customer saw it.
type partSeen struct {
	k       int
	amount  nip90.Amount // quotes
	hash    string       // escrow: the quote's or the part's payment hash
	content string       // parts
}

// streamView is what a customer saw of a stream.
type streamView struct {
	quotes   []partSeen
	partials []partSeen
	pays     map[int]<-chan payOutcome
	result   *nostr.Event
	errInfo  string
}

// followStream is the customer's side of a stream: it pays each quote for which pay(k) is
// true as it arrives (each payment answers when its hold settles or is cancelled), calls
// onPartial (may be nil) after each part, checks that a quote never runs more than window parts
// ahead of the parts received, and returns when the result or error feedback arrives.
func (e *escrowEnv) followStream(t *testing.T, job nostr.Event, window int, pay func(k int) bool, onPartial func(k int, v *streamView)) *streamView {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	sub, err := e.conn.Subscribe(ctx, nostr.Filter{Kinds: []int{nip90.KindFeedback, nip90.ResultKind(job.Kind)}, Tags: nostr.TagMap{"e": {job.ID}}})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	v := &streamView{pays: map[int]<-chan payOutcome{}}
	for {
		select {
		case evt := <-sub.Events:
			if nip90.IsResultKind(evt.Kind) {
				v.result = evt
				return v
			}
			fb, err := nip90.ParseJobFeedback(evt)
			if err != nil {
				t.Fatalf("malformed feedback: %v", err)
			}
			part, isPart, err := stream.ParsePart(evt.Tags)
			if err != nil {
				t.Fatalf("feedback %v: %v", evt.Tags, err)
			}
			switch fb.Status {
			case nip90.StatusError:
				v.errInfo = fb.Info
				return v
			case nip90.StatusPaymentRequired:
				if !isPart || fb.Amount == nil || part.N != len(job.Tags.GetAll([]string{"i"})) || stream.ParseWindow(evt.Tags) != window {
					t.Fatalf("quote without a part, an amount and the window: %v", evt.Tags)
				}
				if part.K > len(v.partials)+window {
					t.Fatalf("part %d quoted with %d parts received: more than a window (%d) ahead", part.K, len(v.partials), window)
				}
				q := partSeen{k: part.K, amount: *fb.Amount}
				if eq, ok, _ := escrow.ParseQuote(evt.Tags); ok {
					q.hash = eq.PaymentHash
				}
				v.quotes = append(v.quotes, q)
				if pay(part.K) {
					v.pays[part.K] = e.pay(t, fb.Amount.Bolt11)
				}
			case nip90.StatusPartial:
				if !isPart || part.K != len(v.partials)+1 {
					t.Fatalf("part %v arrived after %d parts: want them in order", part, len(v.partials))
				}
				p := partSeen{k: part.K, content: evt.Content}
				p.hash, _, _ = escrow.ParseResult(evt.Tags)
				v.partials = append(v.partials, p)
				if onPartial != nil {
					onPartial(part.K, v)
				}
			}
		case <-ctx.Done():
			t.Fatalf("stream %s neither ended nor failed within 4 minutes", job.ID)
		}
	}
}

// storedPartState polls the worker's store until part k of job is in state want.
func storedPartState(t *testing.T, s *jobStore, id string, k int, want string) storedPart {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		p, err := s.part(context.Background(), id, k)
		if err == nil && p.State == want {
			return p
		}
		if time.Now().After(deadline) {
			t.Fatalf("part %d of job %s is %q (%v), want %q", k, id, p.State, err, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func payAll(int) bool { return true }

// openParts opens each escrow part with the preimage its payment returned, checking it hashes
// to the part's payment hash; it returns the texts.
func openParts(t *testing.T, job nostr.Event, v *streamView) []string {
	t.Helper()
	var texts []string
	for _, p := range v.partials {
		out := awaitPay(t, v.pays[p.k])
		if out.err != nil {
			t.Fatalf("pay part %d: %v", p.k, out.err)
		}
		pre, err := escrow.ParsePreimage(out.res.Preimage)
		if err != nil || pre.Hash() != p.hash {
			t.Fatalf("part %d: preimage %q does not hash to its payment hash %s", p.k, out.res.Preimage, p.hash)
		}
		plain, err := escrow.OpenContent(pre, stream.SealContext(job.ID, stream.Part{K: p.k, N: len(streamPages)}), p.content)
		if err != nil {
			t.Fatalf("open part %d: %v", p.k, err)
		}
		texts = append(texts, string(plain))
	}
	return texts
}

// A 3-part escrow stream paid part by part: the parts arrive in order, each opens with its
// own preimage, each is settled once, the result joins them, and the balances move by exactly
// the sum of the parts.
func TestStreamEscrow(t *testing.T) {
	r, url := startLeaseRelay(t)
	e := newEscrowEnvOn(t, url)
	var rec *settleRecorder
	w, _ := e.run(t, e.cfg, func(api walletAPI) walletAPI {
		rec = &settleRecorder{walletAPI: api, check: func() {}}
		return rec
	})
	before := e.balances(t)
	urls, _, _ := pageSite(t, streamPages, 0)
	job := postStream(t, e.cust, e.conn, urls, []string{escrow.SchemeEscrow, escrow.SchemePrepay})
	v := e.followStream(t, job, 2, payAll, nil)
	if v.result == nil {
		t.Fatalf("stream failed: %s", v.errInfo)
	}
	if len(v.partials) != 3 || len(v.quotes) != 3 {
		t.Fatalf("%d parts and %d quotes, want 3 of each", len(v.partials), len(v.quotes))
	}
	texts := openParts(t, job, v)
	for i, text := range texts {
		if normalize(text) != streamPages[i] {
			t.Fatalf("part %d reads %q, want %q", i+1, text, streamPages[i])
		}
		if normalize(v.partials[i].content) == streamPages[i] {
			t.Fatalf("part %d was published in the clear", i+1)
		}
	}
	if v.result.Content != stream.Join(texts) || v.result.Tags.FindWithValue(stream.PartsTag, "3") == nil || v.result.Tags.Find("amount") != nil {
		t.Fatalf("result %q %v, want the parts joined, a parts tag and no invoice", v.result.Content, v.result.Tags)
	}
	for k := 1; k <= 3; k++ {
		storedPartState(t, w.store, job.ID, k, StateSettled)
	}
	storedState(t, w.store, job.ID, StateStreamed)
	if n := rec.settles.Load(); n != 3 {
		t.Fatalf("%d settles, want 3", n)
	}
	sum := int64(3 * escrowPrice)
	e.movedBy(t, before, sum)
	if j, ok := r.Jobs().Lookup(job.ID); !ok || j.ResultBy != w.PubKey() {
		t.Fatalf("relay job table: %+v", j)
	}
}

// A prepay stream: each part's plain invoice is paid before it runs; the parts come in the
// clear and the balances move by the sum of the parts.
func TestStreamPrepay(t *testing.T) {
	e := newEscrowEnv(t)
	w, _ := e.run(t, e.cfg, nil)
	before := e.balances(t)
	urls, _, _ := pageSite(t, streamPages, 0)
	job := postStream(t, e.cust, e.conn, urls, []string{escrow.SchemePrepay})
	v := e.followStream(t, job, 2, payAll, nil)
	if v.result == nil {
		t.Fatalf("stream failed: %s", v.errInfo)
	}
	var texts []string
	for i, p := range v.partials {
		if normalize(p.content) != streamPages[i] || p.hash != "" {
			t.Fatalf("part %d: %q (escrow tag %q), want %q in the clear", i+1, p.content, p.hash, streamPages[i])
		}
		texts = append(texts, p.content)
	}
	if len(texts) != 3 || v.result.Content != stream.Join(texts) {
		t.Fatalf("result %q from %d parts", v.result.Content, len(texts))
	}
	for k := 1; k <= 3; k++ {
		if out := awaitPay(t, v.pays[k]); out.err != nil {
			t.Fatalf("pay part %d: %v", k, out.err)
		}
		storedPartState(t, w.store, job.ID, k, StateDelivered)
	}
	sum := int64(3 * escrowPrice)
	e.movedBy(t, before, sum)
}

// A customer that pays two parts and then deletes the request: part 3 is never paid, its
// hold invoice is cancelled (paying it later fails), the customer hears the stream stopped
// after 2 of 3 parts, and the balances move by two parts.
func TestStreamStoppedByDeletion(t *testing.T) {
	e := newEscrowEnv(t)
	w, _ := e.run(t, e.cfg, nil)
	before := e.balances(t)
	urls, _, _ := pageSite(t, streamPages, 0)
	job := postStream(t, e.cust, e.conn, urls, []string{escrow.SchemeEscrow})
	// the deletion goes once part 2 arrived and part 3 was quoted (it is quoted when part 1's
	// settle opens the window, which may come after part 2 under load), in whichever order
	var partTwo, quoteThree, deleted bool
	deleteOnce := func() {
		if partTwo && quoteThree && !deleted {
			deleted = true
			deleteRequest(t, e.cust, e.conn, job)
		}
	}
	v := e.followStream(t, job, 2, func(k int) bool {
		if k == 3 {
			quoteThree = true
			deleteOnce()
		}
		return k <= 2
	}, func(k int, _ *streamView) {
		if k == 2 {
			partTwo = true
			deleteOnce()
		}
	})
	if v.result != nil || v.errInfo != "stopped by the customer after 2 of 3 parts" {
		t.Fatalf("outcome %v %q, want stopped after 2 of 3 parts", v.result, v.errInfo)
	}
	openParts(t, job, v)
	storedPartState(t, w.store, job.ID, 3, StateFailed)
	storedState(t, w.store, job.ID, StateStreamEnded)
	var third partSeen
	for _, q := range v.quotes {
		if q.k == 3 {
			third = q
		}
	}
	if third.k != 3 {
		t.Fatal("part 3 was never quoted")
	}
	if out := awaitPay(t, e.pay(t, third.amount.Bolt11)); out.err == nil {
		t.Fatal("paid part 3 after the stream stopped")
	}
	sum := int64(2 * escrowPrice)
	e.movedBy(t, before, sum)
}

// A deletion while part 2's payment is held and it runs stops the run and cancels the hold:
// its pay_invoice fails, and the customer pays part 1 only.
func TestStreamDeletionCancelsHeldPart(t *testing.T) {
	e := newEscrowEnv(t)
	cfg := e.cfg
	cfg.FetchTime = 3 * time.Minute // the held part's fetch waits for the deletion
	w, _ := e.run(t, cfg, nil)
	before := e.balances(t)
	urls, held, _ := pageSite(t, streamPages, 2)
	job := postStream(t, e.cust, e.conn, urls, []string{escrow.SchemeEscrow})
	go func() {
		select {
		case <-held:
			deleteRequest(t, e.cust, testrelay.Dial(t, e.relay), job)
		case <-time.After(3 * time.Minute):
		}
	}()
	v := e.followStream(t, job, 2, payAll, nil)
	if v.result != nil || v.errInfo == "" || !strings.HasPrefix(v.errInfo, "stopped by the customer after 1 of 3 parts") {
		t.Fatalf("outcome %v %q, want stopped after 1 of 3 parts", v.result, v.errInfo)
	}
	if len(v.partials) != 1 {
		t.Fatalf("%d parts delivered, want 1", len(v.partials))
	}
	openParts(t, job, v)
	if out := awaitPay(t, v.pays[2]); !errors.Is(out.err, nip47.ErrPaymentFailed) {
		t.Fatalf("pay part 2: %+v, want PAYMENT_FAILED", out)
	}
	storedPartState(t, w.store, job.ID, 2, StateRefunded)
	if ch, ok := v.pays[3]; ok { // part 3 was held (or cancelled before it was)
		if out := awaitPay(t, ch); out.err == nil {
			t.Fatal("part 3 was paid")
		}
	}
	sum := int64(escrowPrice)
	e.movedBy(t, before, sum)
}

// followBeside runs followStream (paying every quote) beside the test; end waits (bounded)
// for the stream's end and returns what the customer saw.
func (e *escrowEnv) followBeside(t *testing.T, job nostr.Event, window int) (end func() *streamView) {
	var v *streamView
	done := make(chan struct{})
	go func() { defer close(done); v = e.followStream(t, job, window, payAll, nil) }()
	return func() *streamView {
		t.Helper()
		awaitClosed(t, done, "the stream's end")
		return v
	}
}

// completedOnce checks a stream of streamPages, escrow-paid, that followStream saw end: a
// result, every part delivered in order with its page's text and settled in the worker's store
// s, and the worker's and the customer's balances (before) moved by the parts' price once.
func (e *escrowEnv) completedOnce(t *testing.T, job nostr.Event, v *streamView, s *jobStore, before [2]int64) {
	t.Helper()
	if v.result == nil {
		t.Fatalf("stream failed: %s", v.errInfo)
	}
	texts := openParts(t, job, v)
	if len(texts) != len(streamPages) {
		t.Fatalf("%d parts delivered, want %d", len(texts), len(streamPages))
	}
	for i, text := range texts {
		if normalize(text) != streamPages[i] {
			t.Fatalf("part %d reads %q", i+1, text)
		}
	}
	for k := 1; k <= len(streamPages); k++ {
		storedPartState(t, s, job.ID, k, StateSettled)
	}
	sum := int64(len(streamPages) * escrowPrice)
	e.movedBy(t, before, sum)
}

// stoppedRunningPart2 runs a worker, posts an escrow stream of streamPages followed beside the
// test (end), and stops the worker while part 2 is paid, held and running (its input is let go
// after): a stream for a worker on the same store (cfg) to resume. before is the balances at
// the start.
func (e *escrowEnv) stoppedRunningPart2(t *testing.T) (cfg Config, job nostr.Event, end func() *streamView, before [2]int64) {
	t.Helper()
	cfg = e.cfg
	cfg.FetchTime = 3 * time.Minute
	w, stop := e.run(t, cfg, nil)
	before = e.balances(t)
	urls, held, release := pageSite(t, streamPages, 2)
	job = postStream(t, e.cust, e.conn, urls, []string{escrow.SchemeEscrow})
	end = e.followBeside(t, job, 2)
	awaitClosed(t, held, "part 2's paid run")
	storedPartState(t, w.store, job.ID, 2, StateRunning)
	stop()
	release()
	return cfg, job, end, before
}

// A worker stopped while part 2 is held and running resumes the stream when it starts again
// on the same store: every part is delivered and settled once.
func TestStreamSurvivesRestart(t *testing.T) {
	e := newEscrowEnv(t)
	cfg, job, end, before := e.stoppedRunningPart2(t)
	w2, _ := e.run(t, cfg, nil)
	v := end()
	e.completedOnce(t, job, v, w2.store, before)
}

// holdStaller makes hold invoices through the wallet, except the nth, which waits for the
// worker's shutdown (entered is closed when it starts), as a wallet call in flight then does.
type holdStaller struct {
	walletAPI
	nth     int32
	calls   atomic.Int32
	entered chan struct{}
}

func (h *holdStaller) MakeHoldInvoice(ctx context.Context, p nip47.MakeHoldInvoiceParams) (nip47.Transaction, error) {
	if h.calls.Add(1) == h.nth {
		close(h.entered)
		<-ctx.Done()
		return nip47.Transaction{}, fmt.Errorf("make hold invoice: %w", ctx.Err())
	}
	return h.walletAPI.MakeHoldInvoice(ctx, p)
}

// A worker stopped while it makes part 3's hold invoice, before the quote went out, quotes the
// part again when it starts on the same store: the stream completes, every part settled once.
func TestStreamRestartMidQuote(t *testing.T) {
	e := newEscrowEnv(t)
	stall := &holdStaller{nth: 3, entered: make(chan struct{})}
	_, stop := e.run(t, e.cfg, func(api walletAPI) walletAPI { stall.walletAPI = api; return stall })
	before := e.balances(t)
	urls, _, _ := pageSite(t, streamPages, 0)
	job := postStream(t, e.cust, e.conn, urls, []string{escrow.SchemeEscrow})
	end := e.followBeside(t, job, 2)
	awaitClosed(t, stall.entered, "part 3's hold invoice")
	stop()
	w2, _ := e.run(t, e.cfg, nil)
	v := end()
	e.completedOnce(t, job, v, w2.store, before)
}

// A quote that never reached the customer (the worker recorded part 2's invoice, then its
// quote was lost: here the relay refuses it, as a shutdown right after the invoice was
// recorded would cut it short) is sent again when the worker starts on the same store: the
// customer pays it and the stream completes, every part settled once. Without the re-send
// the stream would wait for part 2's invoice to expire.
func TestStreamResendsLostQuote(t *testing.T) {
	var dropped atomic.Bool
	lost := make(chan struct{})
	url := testrelay.StartWith(t, func(r *khatru.Relay) {
		r.RejectEvent = append(r.RejectEvent, func(_ context.Context, evt *nostr.Event) (bool, string) {
			if evt.Kind != nip90.KindFeedback || evt.Tags.GetFirst([]string{"status", string(nip90.StatusPaymentRequired)}) == nil {
				return false, ""
			}
			if p, ok, _ := stream.ParsePart(evt.Tags); ok && p.K == 2 && dropped.CompareAndSwap(false, true) {
				close(lost)
				return true, "blocked: this test loses part 2's first quote"
			}
			return false, ""
		})
	})
	e := newEscrowEnvOn(t, url)
	w, stop := e.run(t, e.cfg, nil)
	before := e.balances(t)
	urls, _, _ := pageSite(t, streamPages, 0)
	job := postStream(t, e.cust, e.conn, urls, []string{escrow.SchemeEscrow})
	end := e.followBeside(t, job, 2)
	awaitClosed(t, lost, "part 2's quote")
	storedPartState(t, w.store, job.ID, 1, StateSettled)
	if p := storedPartState(t, w.store, job.ID, 2, StateQuoted); p.Bolt11 == "" {
		t.Fatal("part 2 is quoted without its invoice recorded")
	}
	stop()
	w2, _ := e.run(t, e.cfg, nil)
	v := end()
	e.completedOnce(t, job, v, w2.store, before)
}

// A bid that covers part 1 and not part 2 ends the stream after part 1, which is paid.
func TestStreamBidCapsParts(t *testing.T) {
	e := newEscrowEnv(t)
	w, _ := e.run(t, e.cfg, nil)
	urls, _, _ := pageSite(t, streamPages, 0)
	job := postStream(t, e.cust, e.conn, urls, []string{escrow.SchemeEscrow}, nostr.Tag{"bid", strconv.Itoa(escrowPrice + escrowPrice/2)})
	v := e.followStream(t, job, 2, payAll, nil)
	if v.result != nil || !strings.HasPrefix(v.errInfo, "stream ended after 1 of 3 parts: part 2") {
		t.Fatalf("outcome %v %q, want the stream ended after part 1 over the bid", v.result, v.errInfo)
	}
	if len(v.quotes) != 1 || len(v.partials) != 1 {
		t.Fatalf("%d quotes and %d parts, want 1 of each", len(v.quotes), len(v.partials))
	}
	openParts(t, job, v)
	storedPartState(t, w.store, job.ID, 1, StateSettled)
}

// A request with more inputs than --max-parts is refused with the limit; a free worker serves
// a shorter one as a stream all the same: its parts, then their join.
func TestStreamFreeAndTooLong(t *testing.T) {
	url := testrelay.Start(t)
	cfg := testConfig(t, url)
	cfg.MaxParts = 2
	startWorker(t, cfg)
	conn := testrelay.Dial(t, url)
	c := newCustomer()
	urls, _, _ := pageSite(t, streamPages, 0)
	long := postStream(t, c, conn, urls, nil)
	if res, info := testrelay.JobOutcome(t, conn, long); res != nil || !strings.Contains(info, "at most 2 parts") {
		t.Fatalf("outcome %v %q, want a refusal naming the limit of 2 parts", res, info)
	}
	job := postStream(t, c, conn, urls[:2], nil)
	res, info := testrelay.JobOutcome(t, conn, job)
	if res == nil {
		t.Fatalf("stream failed: %s", info)
	}
	parts := stream.Split(res.Content)
	if len(parts) != 2 || normalize(parts[0]) != streamPages[0] || normalize(parts[1]) != streamPages[1] {
		t.Fatalf("result %q", res.Content)
	}
	partials := testrelay.Query(t, conn, nostr.Filter{Kinds: []int{nip90.KindFeedback}, Tags: nostr.TagMap{"e": {job.ID}}})
	n := 0
	for _, evt := range partials {
		if p, ok, _ := stream.ParsePart(evt.Tags); ok && evt.Tags.FindWithValue("status", string(nip90.StatusPartial)) != nil {
			n++
			if normalize(evt.Content) != streamPages[p.K-1] {
				t.Fatalf("part %d reads %q", p.K, evt.Content)
			}
		}
	}
	if n != 2 {
		t.Fatalf("%d partial events, want 2", n)
	}
}

// A part whose invoice expires unpaid ends the stream: the customer hears which part was not
// paid, and a part after it, quoted and unpaid, is given up too.
func TestStreamUnpaidPartEnds(t *testing.T) {
	e := newEscrowEnv(t)
	w, _ := e.run(t, e.cfg, nil)
	urls, _, _ := pageSite(t, streamPages, 0)
	job := postStream(t, e.cust, e.conn, urls, []string{escrow.SchemeEscrow})
	v := e.followStream(t, job, 2, func(k int) bool { return k == 1 }, func(k int, v *streamView) {
		for _, q := range v.quotes {
			if q.k == 2 { // what the payment poll hands on when lookup_invoice says it expired
				w.funds(context.Background(), nip47.Transaction{PaymentHash: q.hash, State: nip47.StateExpired})
			}
		}
	})
	if v.result != nil || v.errInfo != "stream ended: part 2 was not paid" {
		t.Fatalf("outcome %v %q, want part 2 not paid", v.result, v.errInfo)
	}
	openParts(t, job, v)
	for _, q := range v.quotes { // part 3 is quoted too when part 1 settled before part 2 expired
		if q.k > 1 {
			storedPartState(t, w.store, job.ID, q.k, StateFailed)
		}
	}
}

// A stream none of whose parts was paid (the customer chose another worker) ends without a
// word when its quotes expire: error feedback from a worker the customer did not choose would
// only confuse it. Its quoted parts are given up.
func TestStreamUnchosenEndsSilently(t *testing.T) {
	e := newEscrowEnv(t)
	w, _ := e.run(t, e.cfg, nil)
	urls, _, _ := pageSite(t, streamPages, 0)
	job := postStream(t, e.cust, e.conn, urls, []string{escrow.SchemeEscrow})
	var quotes []*nostr.Event
	deadline := time.Now().Add(time.Minute)
	for len(quotes) < 2 { // the window's two quotes
		if time.Now().After(deadline) {
			t.Fatalf("%d quotes, want 2", len(quotes))
		}
		quotes = testrelay.Query(t, e.conn, nostr.Filter{Kinds: []int{nip90.KindFeedback}, Tags: nostr.TagMap{"e": {job.ID}, "status": {string(nip90.StatusPaymentRequired)}}})
		time.Sleep(20 * time.Millisecond)
	}
	for _, q := range quotes { // what the payment poll hands on when lookup_invoice says it expired
		eq, ok, err := escrow.ParseQuote(q.Tags)
		if !ok || err != nil {
			t.Fatalf("quote %v: %v", q.Tags, err)
		}
		w.funds(context.Background(), nip47.Transaction{PaymentHash: eq.PaymentHash, State: nip47.StateExpired})
	}
	storedState(t, w.store, job.ID, StateStreamEnded)
	for deadline := time.Now().Add(time.Minute); w.streams.get(job.ID) != nil; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the stream's driver did not return")
		}
	}
	if errs := testrelay.Query(t, e.conn, nostr.Filter{Kinds: []int{nip90.KindFeedback}, Tags: nostr.TagMap{"e": {job.ID}, "status": {string(nip90.StatusError)}}}); len(errs) != 0 {
		t.Fatalf("error feedback %q from a worker the customer never paid", errs[0].Tags)
	}
	storedPartState(t, w.store, job.ID, 1, StateFailed)
	storedPartState(t, w.store, job.ID, 2, StateFailed)
}

// A prepay stream stopped while a paid part runs: the part is not delivered and its price is
// recorded as owed to the customer, as for a whole job.
func TestStreamPrepayStopOwes(t *testing.T) {
	e := newEscrowEnv(t)
	cfg := e.cfg
	cfg.FetchTime = 3 * time.Minute
	w, _ := e.run(t, cfg, nil)
	urls, held, _ := pageSite(t, streamPages, 2)
	job := postStream(t, e.cust, e.conn, urls, []string{escrow.SchemePrepay})
	go func() {
		select {
		case <-held:
			deleteRequest(t, e.cust, testrelay.Dial(t, e.relay), job)
		case <-time.After(3 * time.Minute):
		}
	}()
	v := e.followStream(t, job, 2, payAll, nil)
	if v.result != nil || !strings.HasPrefix(v.errInfo, "stopped by the customer after 1 of 3 parts") || !strings.Contains(v.errInfo, "owed to you") {
		t.Fatalf("outcome %v %q, want stopped after 1 of 3 parts with a debt", v.result, v.errInfo)
	}
	storedPartState(t, w.store, job.ID, 2, StateOwed)
	debts, err := w.Debts(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	owed := map[string]int64{}
	for _, d := range debts {
		owed[d.JobID] = d.AmountMsat
	}
	if owed[job.ID+":2"] != escrowPrice || owed[job.ID+":1"] != 0 {
		t.Fatalf("debts %+v, want part 2's price owed and part 1 not", debts)
	}
}

// A worker down while a held part's settle window closes cancels that part at start and ends
// the stream: the parts delivered before stay paid, the held one is returned.
func TestStreamPastWindowRefunds(t *testing.T) {
	e := newEscrowEnv(t)
	cfg, job, end, before := e.stoppedRunningPart2(t)
	s, err := openJobStore(context.Background(), cfg.Data)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.db.Exec(`UPDATE parts SET accepted_at = ? WHERE job_id = ? AND k = 2`, time.Now().Add(-2*cfg.SettleWindow).Unix(), job.ID); err != nil {
		t.Fatal(err)
	}
	s.Close()
	w2, _ := e.run(t, cfg, nil)
	v := end()
	if v.result != nil || !strings.HasPrefix(v.errInfo, "stream ended: the settle window of part 2 closed") {
		t.Fatalf("outcome %v %q, want the stream ended over part 2's settle window", v.result, v.errInfo)
	}
	openParts(t, job, v)
	if out := awaitPay(t, v.pays[2]); !errors.Is(out.err, nip47.ErrPaymentFailed) {
		t.Fatalf("pay part 2: %+v, want PAYMENT_FAILED", out)
	}
	storedPartState(t, w2.store, job.ID, 2, StateRefunded)
	if ch, ok := v.pays[3]; ok {
		if out := awaitPay(t, ch); out.err == nil {
			t.Fatal("part 3 was paid")
		}
	}
	sum := int64(escrowPrice)
	e.movedBy(t, before, sum)
}

// A worker paid only after delivery for the model refuses a stream, saying why.
func TestStreamRefusedPostPay(t *testing.T) {
	e := newEscrowEnv(t)
	cfg := e.cfg
	cfg.Payment = []string{escrow.SchemeAfter}
	startWorker(t, cfg)
	urls, _, _ := pageSite(t, streamPages, 0)
	job := postStream(t, e.cust, e.conn, urls, []string{escrow.SchemeEscrow, escrow.SchemePrepay, escrow.SchemeAfter})
	if res, info := testrelay.JobOutcome(t, e.conn, job); res != nil || !strings.Contains(info, "paid after delivery") {
		t.Fatalf("outcome %v %q, want a refusal saying streams are not paid after delivery", res, info)
	}
}

// The stream settings are checked with the rest of the config.
func TestStreamConfig(t *testing.T) {
	for _, tc := range []struct {
		name string
		set  func(*Config)
		ok   bool
	}{
		{"defaults", func(*Config) {}, true},
		{"window of one", func(c *Config) { c.StreamWindow = 1 }, true},
		{"no window", func(c *Config) { c.StreamWindow = 0 }, false},
		{"window past max parts", func(c *Config) { c.StreamWindow = c.MaxParts + 1 }, false},
		{"one part", func(c *Config) { c.MaxParts = 1 }, false},
		{"past the wire bound", func(c *Config) { c.MaxParts = stream.MaxParts + 1 }, false},
		{"no streams", func(c *Config) { c.MaxStreams = 0 }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.Relays = []string{"ws://127.0.0.1:1"}
			tc.set(&cfg)
			if err := cfg.Validate(); (err == nil) != tc.ok {
				t.Fatalf("Validate: %v, want ok=%v", err, tc.ok)
			}
		})
	}
}

// Part states move by compare-and-set only: a payment is recorded once, a part is delivered
// only from running, owed only from paid or running, and never both.
func TestPartTransitions(t *testing.T) {
	ctx := context.Background()
	s, err := openJobStore(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	p := storedPart{JobID: strings.Repeat("a", 64), K: 1, N: 2, State: StateQuoted, AmountMsat: 1000, PaymentHash: strings.Repeat("b", 64)}
	if err := s.putPart(ctx, p); err != nil {
		t.Fatal(err)
	}
	if err := s.putPart(ctx, p); err == nil {
		t.Fatal("a part was stored twice")
	}
	check := func(what string, got bool, err error, want bool) {
		t.Helper()
		if err != nil || got != want {
			t.Fatalf("%s: %v %v, want %v", what, got, err, want)
		}
	}
	ok, err := s.deliverPart(ctx, p.JobID, 1, "text")
	check("deliver a quoted part", ok, err, false)
	ok, err = s.acceptPart(ctx, p.JobID, 1, time.Now())
	check("accept", ok, err, true)
	ok, err = s.acceptPart(ctx, p.JobID, 1, time.Now())
	check("accept again", ok, err, false)
	ok, err = s.advancePart(ctx, p.JobID, 1, StatePaid, StateRunning)
	check("run", ok, err, true)
	ok, err = s.deliverPart(ctx, p.JobID, 1, "text")
	check("deliver", ok, err, true)
	ok, err = s.owePart(ctx, p, "customer", "too late")
	check("owe a delivered part", ok, err, false)
	got, err := s.partByHash(ctx, p.PaymentHash)
	if err != nil || got.State != StateDelivered || got.Text != "text" || got.AcceptedAt.IsZero() {
		t.Fatalf("part %+v %v", got, err)
	}
	q := storedPart{JobID: p.JobID, K: 2, N: 2, State: StateQuoted, AmountMsat: 500, PaymentHash: strings.Repeat("c", 64)}
	if err := s.putPart(ctx, q); err != nil {
		t.Fatal(err)
	}
	s.acceptPart(ctx, q.JobID, 2, time.Now())
	ok, err = s.owePart(ctx, q, "customer", "stopped")
	check("owe a paid part", ok, err, true)
	ok, err = s.owePart(ctx, q, "customer", "stopped")
	check("owe it again", ok, err, false)
	debts, err := s.debts(ctx)
	if err != nil || len(debts) != 1 || debts[0].JobID != q.JobID+":2" || debts[0].AmountMsat != 500 {
		t.Fatalf("debts %+v %v", debts, err)
	}
}

// Streams beyond --max-streams are answered busy while the others are served.
func TestStreamBusy(t *testing.T) {
	e := newEscrowEnv(t)
	cfg := e.cfg
	cfg.MaxStreams = 1
	w, _ := e.run(t, cfg, nil)
	urls, _, _ := pageSite(t, streamPages, 0)
	first := postStream(t, e.cust, e.conn, urls, []string{escrow.SchemeEscrow})
	e.quote(t, first) // served: quoted, waiting for its payment
	second := postStream(t, e.cust, e.conn, urls[:2], []string{escrow.SchemeEscrow})
	if res, info := testrelay.JobOutcome(t, e.conn, second); res != nil || !strings.HasPrefix(info, "busy:") {
		t.Fatalf("outcome %v %q, want busy", res, info)
	}
	if w.streams.get(first.ID) == nil {
		t.Fatal("the first stream is not being served")
	}
}

// A stream whose worker's owner comes back: the paid part running then runs on and is
// delivered and settled, nothing further is quoted, and once the pause's grace is over the
// stream ends with "paused by owner" so the customer can take the rest elsewhere.
func TestStreamPausedByOwner(t *testing.T) {
	e := newEscrowEnv(t)
	var busy atomic.Bool
	cfg := e.cfg
	cfg.StreamWindow = 1
	cfg.FetchTime = 3 * time.Minute
	cfg.When, cfg.MaxOtherLoad = WhenIdle, 0.25
	cfg.SampleEvery, cfg.IdleAfter, cfg.Grace = 100*time.Millisecond, 200*time.Millisecond, 0
	cfg.Owner = func() OwnerSample {
		if busy.Load() {
			return OwnerSample{OtherLoad: 0.9}
		}
		return OwnerSample{OtherLoad: 0.05}
	}
	w, _ := e.run(t, cfg, nil)
	deadline := time.Now().Add(30 * time.Second)
	for paused, _ := w.Paused(); paused; paused, _ = w.Paused() { // idle mode starts by measuring
		if time.Now().After(deadline) {
			t.Fatal("the worker never resumed after measuring its owner")
		}
		time.Sleep(10 * time.Millisecond) // poll interval
	}
	before := e.balances(t)
	urls, held, release := pageSite(t, streamPages, 1)
	job := postStream(t, e.cust, e.conn, urls, []string{escrow.SchemeEscrow})
	end := e.followBeside(t, job, 1)
	awaitClosed(t, held, "part 1's paid run")
	busy.Store(true)
	for paused, _ := w.Paused(); !paused; paused, _ = w.Paused() {
		if time.Now().After(deadline.Add(time.Minute)) {
			t.Fatal("the worker did not pause under its owner's load")
		}
		time.Sleep(10 * time.Millisecond) // poll interval
	}
	release()
	v := end()
	if v.result != nil || v.errInfo != "paused by owner after 1 of 3 parts" {
		t.Fatalf("outcome %v %q, want the stream ended by the pause after part 1", v.result, v.errInfo)
	}
	if len(v.quotes) != 1 || len(v.partials) != 1 {
		t.Fatalf("%d quotes and %d parts, want part 1 alone", len(v.quotes), len(v.partials))
	}
	if texts := openParts(t, job, v); normalize(texts[0]) != streamPages[0] {
		t.Fatalf("part 1 reads %q", texts[0])
	}
	storedPartState(t, w.store, job.ID, 1, StateSettled)
	sum := int64(escrowPrice)
	e.movedBy(t, before, sum)
}
