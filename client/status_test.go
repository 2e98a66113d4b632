package client

import (
	"errors"
	"testing"

	"github.com/nbd-wtf/go-nostr"

	"github.com/sparecycles/sparecycles/nips/nip90"
)

func TestSummarize(t *testing.T) {
	customer, a, b := nostr.GeneratePrivateKey(), nostr.GeneratePrivateKey(), nostr.GeneratePrivateKey()
	jr := nip90.JobRequest{Kind: 5000, Inputs: []nip90.Input{{Value: "https://example.com/a.png", Type: nip90.InputURL}}, BidMsat: 9000, CreatedAt: 1000}
	req := signed(t, customer, jr.Event())
	job := req.ID
	fb := func(sk string, at nostr.Timestamp, s nip90.Status, info string, msat int64) *nostr.Event {
		f := nip90.JobFeedback{JobID: job, Status: s, Info: info, CreatedAt: at}
		if msat > 0 {
			f.Amount = &nip90.Amount{Msat: msat, Bolt11: "lnbcrt1x"}
		}
		return signed(t, sk, f.Event())
	}
	result := func(sk string, at nostr.Timestamp, kind int, content string) *nostr.Event {
		r := nip90.JobResult{Kind: kind, JobID: job, CreatedAt: at, Content: content}
		return signed(t, sk, r.Event())
	}
	paidTo := func(sk string) []Payment {
		pk, _ := nostr.GetPublicKey(sk)
		return []Payment{{JobID: job, Worker: pk, State: PayPaid, AmountMsat: 5000}}
	}
	pub := func(sk string) string { pk, _ := nostr.GetPublicKey(sk); return pk }

	tests := []struct {
		name       string
		evs        []*nostr.Event
		payments   []Payment
		want       JobState
		wantWorker string
		wantInfo   string
		wantQuotes int
		wantResult string
		wantErr    error
	}{
		{name: "unknown", wantErr: ErrUnknownJob},
		{name: "posted", evs: []*nostr.Event{req}, want: JobPosted},
		{name: "quoted by two", evs: []*nostr.Event{req, fb(a, 1001, nip90.StatusPaymentRequired, "", 5000), fb(b, 1002, nip90.StatusPaymentRequired, "", 6000)},
			want: JobQuoted, wantQuotes: 2},
		{name: "processing", evs: []*nostr.Event{req, fb(a, 1001, nip90.StatusPaymentRequired, "", 5000), fb(a, 1003, nip90.StatusProcessing, "", 0)},
			want: JobProcessing, wantWorker: pub(a), wantQuotes: 1},
		{name: "only worker refused", evs: []*nostr.Event{req, fb(a, 1001, nip90.StatusError, "bid below the price of 9000 msat", 0)},
			want: JobError, wantWorker: pub(a), wantInfo: "bid below the price of 9000 msat"},
		{name: "paid worker failed while another quotes", evs: []*nostr.Event{req, fb(a, 1001, nip90.StatusPaymentRequired, "", 5000),
			fb(b, 1001, nip90.StatusPaymentRequired, "", 6000), fb(a, 1002, nip90.StatusError, "model crashed", 0)},
			payments: paidTo(a), want: JobError, wantWorker: pub(a), wantInfo: "model crashed", wantQuotes: 2},
		{name: "quote and error in one second", evs: []*nostr.Event{req, fb(a, 1001, nip90.StatusError, "boom", 0), fb(a, 1001, nip90.StatusPaymentRequired, "", 5000)},
			payments: paidTo(a), want: JobError, wantWorker: pub(a), wantInfo: "boom", wantQuotes: 1},
		{name: "paid worker's result wins", evs: []*nostr.Event{req, result(a, 1005, 6000, "ours"), result(b, 1009, 6000, "theirs")},
			payments: paidTo(a), want: JobDone, wantWorker: pub(a), wantResult: "ours"},
		{name: "free job: newest result", evs: []*nostr.Event{req, result(a, 1005, 6000, "first"), result(b, 1009, 6000, "second")},
			want: JobDone, wantWorker: pub(b), wantResult: "second"},
		{name: "result of another kind", evs: []*nostr.Event{req, result(a, 1005, 6001, "wrong kind")}, want: JobPosted},
		{name: "request gone, payment recorded", payments: paidTo(a), want: JobPosted},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st, err := summarize(job, tc.evs, tc.payments)
			if !errors.Is(err, tc.wantErr) || (err == nil) != (tc.wantErr == nil) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if err != nil {
				return
			}
			got := ""
			if st.Result != nil {
				got = st.Result.Content
			}
			if st.State != tc.want || st.Worker != tc.wantWorker || st.Info != tc.wantInfo || len(st.Quotes) != tc.wantQuotes || got != tc.wantResult {
				t.Fatalf("got %s by %.8s (%q), %d quotes, result %q; want %s by %.8s (%q), %d quotes, result %q",
					st.State, st.Worker, st.Info, len(st.Quotes), got, tc.want, tc.wantWorker, tc.wantInfo, tc.wantQuotes, tc.wantResult)
			}
		})
	}
}

func signed(t *testing.T, sk string, evt nostr.Event) *nostr.Event {
	t.Helper()
	if err := evt.Sign(sk); err != nil {
		t.Fatal(err)
	}
	return &evt
}
