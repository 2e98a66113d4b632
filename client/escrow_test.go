package client

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/nbd-wtf/go-nostr"

	"github.com/sparecycles/sparecycles/internal/invoice"
	"github.com/sparecycles/sparecycles/nips/escrow"
	"github.com/sparecycles/sparecycles/nips/nip90"
)

func TestPayByTag(t *testing.T) {
	req := nip90.JobRequest{Kind: 5000, Inputs: []nip90.Input{{Value: "https://example.com/a.png", Type: nip90.InputURL}}, BidMsat: 5000}
	tests := []struct {
		in      string
		want    PayBy
		tag     nostr.Tag // nil: no payment tag
		schemes []string  // as a worker reads the request
		wantErr bool
	}{
		{"", PayByAny, nostr.Tag{"payment", "escrow", "prepay", "after"}, []string{"escrow", "prepay", "after"}, false},
		{"any", PayByAny, nostr.Tag{"payment", "escrow", "prepay", "after"}, []string{"escrow", "prepay", "after"}, false},
		{"Escrow", PayByEscrow, nostr.Tag{"payment", "escrow"}, []string{"escrow"}, false},
		{"prepay", PayByPrepay, nil, []string{"prepay"}, false},
		{"after", "", nil, nil, true},
		{"bitcoin", "", nil, nil, true},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParsePayBy(tc.in)
			if (err != nil) != tc.wantErr || got != tc.want {
				t.Fatalf("ParsePayBy(%q) = %q, %v; want %q, error %v", tc.in, got, err, tc.want, tc.wantErr)
			}
			if err != nil {
				return
			}
			evt := RequestEvent(req, got)
			if found := evt.Tags.Find(escrow.PaymentTag); !slices.Equal(found, tc.tag) {
				t.Errorf("payment tag %v, want %v", found, tc.tag)
			}
			if s := escrow.PaymentSchemes(evt.Tags); !slices.Equal(s, tc.schemes) {
				t.Errorf("a worker reads schemes %v, want %v", s, tc.schemes)
			}
			if _, err := nip90.ParseJobRequest(&evt); err != nil {
				t.Errorf("the request does not parse: %v", err)
			}
		})
	}
}

// quoteEvent is a worker's signed payment-required feedback for job, with extra tags.
func quoteEvent(t *testing.T, sk, job string, msat int64, bolt11 string, extra ...nostr.Tag) *nostr.Event {
	t.Helper()
	fb := nip90.JobFeedback{JobID: job, Status: nip90.StatusPaymentRequired, Amount: &nip90.Amount{Msat: msat, Bolt11: bolt11}, CreatedAt: nostr.Now()}
	evt := fb.Event()
	evt.Tags = append(evt.Tags, extra...)
	return signed(t, sk, evt)
}

// hashOf is an invoice's payment hash.
func hashOf(t *testing.T, bolt11 string) string {
	t.Helper()
	inv, err := invoice.Check(bolt11, invoice.Expect{JobID: strings.Repeat("c", 64), BidMsat: 1 << 40})
	if err != nil {
		t.Fatal(err)
	}
	return inv.PaymentHash
}

func TestBestEscrowQuote(t *testing.T) {
	job := strings.Repeat("c", 64)
	keys := map[string]string{}
	for _, n := range []string{"escrow", "cheap-escrow", "dear-escrow", "plain", "no-hash-match", "bad-seal", "bad-window", "two-tags", "offer"} {
		keys[n] = nostr.GeneratePrivateKey()
	}
	name := map[string]string{}
	for n, sk := range keys {
		name[short(mustPub(sk))] = n
	}
	escrowQuote := func(n string, msat int64, window string) *nostr.Event {
		b := mint(t, job, msat)
		return quoteEvent(t, keys[n], job, msat, b, nostr.Tag{"escrow", escrow.Seal, hashOf(t, b), window})
	}
	other := strings.Repeat("ab", 32)
	ev := map[string]*nostr.Event{
		"escrow":        escrowQuote("escrow", 4000, "600"),
		"cheap-escrow":  escrowQuote("cheap-escrow", 3500, "600"),
		"dear-escrow":   escrowQuote("dear-escrow", 9000, "600"), // over the bid
		"plain":         quoteEvent(t, keys["plain"], job, 2000, mint(t, job, 2000)),
		"no-hash-match": quoteEvent(t, keys["no-hash-match"], job, 1000, mint(t, job, 1000), nostr.Tag{"escrow", escrow.Seal, other, "600"}),
		"bad-seal":      quoteEvent(t, keys["bad-seal"], job, 1000, mint(t, job, 1000), nostr.Tag{"escrow", "rot13", other, "600"}),
		"bad-window":    escrowQuote("bad-window", 1000, "0"),
		"two-tags": quoteEvent(t, keys["two-tags"], job, 1000, mint(t, job, 1000),
			nostr.Tag{"escrow", escrow.Seal, other, "600"}, nostr.Tag{"escrow", escrow.Seal, other, "600"}),
		"offer": signed(t, keys["offer"], func() nostr.Event {
			fb := nip90.JobFeedback{JobID: job, Status: nip90.StatusPaymentRequired, Amount: &nip90.Amount{Msat: 1500}, CreatedAt: nostr.Now(), Extra: nostr.Tags{{"payment", "after"}}}
			return fb.Event()
		}()),
	}
	refusedEscrow := []string{"no-hash-match: escrow quote refused", "is not the escrow tag's", "bad-seal: escrow quote refused", "unknown seal", "bad-window: escrow quote refused", "settle window", "two-tags: escrow quote refused", "more than one", "dear-escrow: invoice: amount above the bid"}
	tests := []struct {
		name     string
		by       PayBy
		quotes   []string
		want     string
		mentions []string
	}{
		{"any: escrow beats a cheaper plain quote and offer", PayByAny, []string{"plain", "escrow", "offer", "no-hash-match", "bad-seal", "bad-window", "two-tags", "dear-escrow"}, "escrow", refusedEscrow},
		{"any: the cheapest escrow quote", PayByAny, []string{"escrow", "plain", "cheap-escrow"}, "cheap-escrow", nil},
		{"any: no acceptable escrow quote, the cheapest other", PayByAny, []string{"plain", "offer", "no-hash-match", "bad-seal"}, "offer", []string{"no-hash-match: escrow quote refused", "bad-seal: escrow quote refused"}},
		{"escrow: plain quotes and offers refused", PayByEscrow, []string{"plain", "offer", "escrow"}, "escrow", []string{"plain: not an escrow quote, and --pay escrow takes escrow quotes only", "offer: a post-pay offer, and --pay escrow"}},
		{"escrow: nothing but plain", PayByEscrow, []string{"plain", "offer"}, "", []string{"plain: not an escrow quote", "offer: a post-pay offer"}},
		{"escrow: malformed escrow quotes only", PayByEscrow, []string{"no-hash-match", "bad-seal"}, "", []string{"no-hash-match: escrow quote refused", "bad-seal: escrow quote refused"}},
		{"prepay: escrow quotes refused", PayByPrepay, []string{"escrow", "plain", "bad-seal"}, "plain", []string{"escrow: an escrow quote, and --pay prepay takes plain quotes only", "bad-seal: an escrow quote"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := &watch{job: job, bid: 5000, by: tc.by, answered: map[string]bool{}}
			for _, n := range tc.quotes {
				w.see(ev[n])
			}
			if len(w.candidates) != len(tc.quotes) {
				t.Fatalf("%d candidates from %d quotes", len(w.candidates), len(tc.quotes))
			}
			best, refusals := w.best()
			got := ""
			if best != nil {
				got = name[short(best.Worker)]
			}
			if got != tc.want {
				t.Fatalf("best = %q, want %q (refusals %q)", got, tc.want, refusals)
			}
			if best != nil && (best.Escrow != nil) != strings.Contains(got, "escrow") {
				t.Errorf("best %q: escrow terms %+v", got, best.Escrow)
			}
			joined := strings.Join(refusals, "\n")
			for key, n := range name { // refusals name workers by short key: read them by name
				joined = strings.ReplaceAll(joined, key, n)
			}
			for _, want := range tc.mentions {
				if !strings.Contains(joined, want) {
					t.Errorf("refusals %q do not mention %q", joined, want)
				}
			}
		})
	}
}

func TestOpenResult(t *testing.T) {
	job, otherJob := strings.Repeat("c", 64), strings.Repeat("d", 64)
	p, err := escrow.NewPreimage()
	if err != nil {
		t.Fatal(err)
	}
	q, _ := escrow.NewPreimage()
	seal := func(p escrow.Preimage, job, text string) string {
		s, err := escrow.SealContent(p, job, []byte(text))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	result := func(content string, tags ...nostr.Tag) *nostr.Event {
		return &nostr.Event{ID: strings.Repeat("e", 64), Tags: append(nostr.Tags{{"e", job}}, tags...), Content: content}
	}
	tests := []struct {
		name     string
		preimage string
		hash     string
		res      *nostr.Event
		want     string
		wantErr  error
	}{
		{"sealed, opened", p.Hex(), p.Hash(), result(seal(p, job, "hello"), escrow.ResultTag(p.Hash())), "hello", nil},
		{"plain result read as it is", p.Hex(), p.Hash(), result("plain text"), "plain text", nil},
		{"sealed under another preimage", p.Hex(), p.Hash(), result(seal(q, job, "hello"), escrow.ResultTag(p.Hash())), "", escrow.ErrSealed},
		{"sealed for another job", p.Hex(), p.Hash(), result(seal(p, otherJob, "hello"), escrow.ResultTag(p.Hash())), "", escrow.ErrSealed},
		{"altered", p.Hex(), p.Hash(), result(seal(p, job, "hello")[:40]+"AAAA", escrow.ResultTag(p.Hash())), "", escrow.ErrSealed},
		{"tag names another hash", p.Hex(), p.Hash(), result(seal(p, job, "hello"), escrow.ResultTag(q.Hash())), "", nil},
		{"malformed tag", p.Hex(), p.Hash(), result(seal(p, job, "hello"), nostr.Tag{"escrow", "rot13", p.Hash()}), "", escrow.ErrBadTag},
		{"preimage not for the hash", q.Hex(), p.Hash(), result(seal(p, job, "hello"), escrow.ResultTag(p.Hash())), "", nil},
		{"preimage not hex", "zz", p.Hash(), result(seal(p, job, "hello"), escrow.ResultTag(p.Hash())), "", escrow.ErrBadPreimage},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := openResult(tc.preimage, tc.hash, job, tc.res)
			if tc.want != "" {
				if err != nil || got != tc.want {
					t.Fatalf("openResult = %q, %v; want %q", got, err, tc.want)
				}
				return
			}
			if err == nil || (tc.wantErr != nil && !errors.Is(err, tc.wantErr)) {
				t.Fatalf("openResult = %q, %v; want an error (%v)", got, err, tc.wantErr)
			}
			// held.open names the job, the worker, the result and the payment when paid for it
			h := &held{quote: Quote{Worker: "w0rker"}, hash: tc.hash, result: tc.res, paid: &Payment{Preimage: tc.preimage}}
			_, err = h.open(job)
			if !errors.Is(err, ErrUnreadable) || !strings.Contains(err.Error(), "w0rker") || !strings.Contains(err.Error(), tc.res.ID) || !strings.Contains(err.Error(), tc.hash) {
				t.Fatalf("open: %v", err)
			}
		})
	}
}

// keep: a result sealed for the payment wins over any other, and a newer sealed one replaces.
func TestHeldKeep(t *testing.T) {
	p, _ := escrow.NewPreimage()
	sealed := &nostr.Event{ID: "sealed", Tags: nostr.Tags{escrow.ResultTag(p.Hash())}}
	sealed2 := &nostr.Event{ID: "sealed2", Tags: nostr.Tags{escrow.ResultTag(p.Hash())}}
	plain := &nostr.Event{ID: "plain"}
	h := &held{hash: p.Hash()}
	for _, step := range []struct {
		res  *nostr.Event
		want string
	}{{plain, "plain"}, {sealed, "sealed"}, {plain, "sealed"}, {sealed2, "sealed2"}} {
		h.keep(step.res)
		if h.result.ID != step.want {
			t.Fatalf("after %s: holding %s, want %s", step.res.ID, h.result.ID, step.want)
		}
	}
}

// unseal: status opens a sealed result with the preimage of the payment that settled for it.
func TestUnseal(t *testing.T) {
	job := strings.Repeat("c", 64)
	p, _ := escrow.NewPreimage()
	q, _ := escrow.NewPreimage()
	sealedText, _ := escrow.SealContent(p, job, []byte("opened text"))
	worker := mustPub(nostr.GeneratePrivateKey())
	result := func() *nip90.JobResult {
		return &nip90.JobResult{ID: "r", PubKey: worker, Content: sealedText, Extra: nostr.Tags{escrow.ResultTag(p.Hash())}}
	}
	pay := func(state, preimage string) []Payment {
		return []Payment{{PaymentHash: p.Hash(), JobID: job, Worker: worker, State: state, Preimage: preimage}}
	}
	tests := []struct {
		name       string
		payments   []Payment
		want       JobState
		wantOpened bool
		wantText   string
		wantErr    string
	}{
		{"settled: opened", pay(PayPaid, p.Hex()), JobDone, true, "opened text", ""},
		{"still locked", pay(PayPaying, ""), JobLocked, false, sealedText, ""},
		{"no payment here", nil, JobDone, false, sealedText, ""},
		{"paid, the preimage does not open it", pay(PayPaid, q.Hex()), JobDone, false, sealedText, "cannot be opened"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st := JobStatus{Job: job, State: JobDone, Worker: worker, Result: result(), Payments: tc.payments}
			unseal(&st)
			if st.State != tc.want || !st.Sealed || st.Opened != tc.wantOpened || st.Result.Content != tc.wantText || !strings.Contains(st.OpenErr, tc.wantErr) || (tc.wantErr == "") != (st.OpenErr == "") {
				t.Fatalf("got %s, sealed %v, opened %v, %q, error %q", st.State, st.Sealed, st.Opened, st.Result.Content, st.OpenErr)
			}
		})
	}
}
