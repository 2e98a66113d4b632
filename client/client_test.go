package client

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nbd-wtf/go-nostr"
	"github.com/rs/zerolog"

	"github.com/sparecycles/sparecycles/internal/invoice"
	"github.com/sparecycles/sparecycles/internal/invoice/invoicetest"
	"github.com/sparecycles/sparecycles/internal/testrelay"
	"github.com/sparecycles/sparecycles/nips/nip47"
)

func TestPayWithWalletDown(t *testing.T) {
	relay := testrelay.Start(t)
	// a wallet URI whose service is not running
	uri := nip47.URI{WalletPubKey: mustPub(nostr.GeneratePrivateKey()), Relays: []string{relay}, Secret: nip47.NewSecret()}
	c, err := Open(context.Background(), Config{Relays: []string{relay}, NWC: uri.Encode(), Data: t.TempDir(), SecretKey: nostr.GeneratePrivateKey()}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, err = c.Pay(ctx, Quote{JobID: strings.Repeat("a", 64), AmountMsat: 1000, Bolt11: "lnbcrt10n1x"})
	if !errors.Is(err, ErrWalletDown) {
		t.Fatalf("pay with the wallet down: %v, want ErrWalletDown", err)
	}
}

func TestBestQuote(t *testing.T) {
	job := strings.Repeat("c", 64)
	cands := []candidate{
		{Quote: Quote{Worker: "expensive", AmountMsat: 4000, Bolt11: mint(t, job, 4000)}},
		{Quote: Quote{Worker: "cheap", AmountMsat: 3000, Bolt11: mint(t, job, 3000)}},
		{Quote: Quote{Worker: "greedy", AmountMsat: 9000, Bolt11: mint(t, job, 9000)}},                      // over the bid
		{Quote: Quote{Worker: "liar", AmountMsat: 1000, Bolt11: mint(t, job, 2000)}},                        // invoice ≠ quote
		{Quote: Quote{Worker: "other-job", AmountMsat: 100, Bolt11: mint(t, strings.Repeat("d", 64), 100)}}, // binds another job
		{Quote: Quote{Worker: "garbage", AmountMsat: 100, Bolt11: "lnbc-not-an-invoice"}},
		{Quote: Quote{Worker: "dear-offer", AmountMsat: 6000}, PostPay: true}, // post-pay, over the bid
	}
	tests := []struct {
		name     string
		bid      int64
		extra    []candidate
		want     string
		mentions []string
	}{
		{"cheapest acceptable quote", 5000, nil, "cheap", []string{"greedy", "above the bid", "liar", "differs from the quoted", "other-job", "does not bind", "garbage", "not a valid BOLT11", "dear-offer", "6000 msat offered (pay after), 5000 msat bid"}},
		{"a cheaper offer wins", 5000, []candidate{{Quote: Quote{Worker: "offer", AmountMsat: 2500}, PostPay: true}}, "offer", nil},
		{"a tie: first come", 5000, []candidate{{Quote: Quote{Worker: "late-offer", AmountMsat: 3000}, PostPay: true}}, "cheap", nil},
		{"no bid: free only", 0, []candidate{{Quote: Quote{Worker: "offer", AmountMsat: 2500}, PostPay: true}}, "", []string{"cheap", "no bid was given (no bid: free workers only)", "offer: invoice: amount above the bid: 2500 msat offered (pay after) and no bid was given"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := &watch{job: job, bid: tc.bid}
			for _, q := range append(slices.Clone(cands), tc.extra...) {
				q.JobID, q.BidMsat = job, tc.bid
				w.candidates = append(w.candidates, q)
			}
			best, refusals := w.best()
			got := ""
			if best != nil {
				got = best.Worker
			}
			if got != tc.want {
				t.Fatalf("best = %q, want %q", got, tc.want)
			}
			joined := strings.Join(refusals, "\n")
			for _, want := range tc.mentions {
				if !strings.Contains(joined, want) {
					t.Errorf("refusals %q do not mention %q", joined, want)
				}
			}
		})
	}
}

// ready: the choice is made early only when waiting cannot change it.
func TestReady(t *testing.T) {
	job := strings.Repeat("c", 64)
	quote := candidate{Quote: Quote{JobID: job, Worker: "a", AmountMsat: 3000, Bolt11: mint(t, job, 3000), BidMsat: 5000}}
	tests := []struct {
		name       string
		named      []string
		live       []string
		answered   []string
		cands      []candidate
		firstQuote bool
		want       bool
	}{
		{"no live worker known: the whole window", nil, nil, []string{"a"}, []candidate{quote}, false, false},
		{"every live worker answered", nil, []string{"a", "b"}, []string{"a", "b"}, []candidate{quote}, false, true},
		{"one live worker still silent", nil, []string{"a", "b"}, []string{"a"}, []candidate{quote}, false, false},
		{"a stranger's answer does not count", nil, []string{"a", "b"}, []string{"a", "sniper"}, []candidate{quote}, false, false},
		{"first quote", nil, []string{"a", "b"}, []string{"a"}, []candidate{quote}, true, true},
		{"first quote, none acceptable yet", nil, nil, []string{"a"}, nil, true, false},
		{"the named worker answered", []string{"a"}, []string{"a", "b"}, []string{"a"}, nil, false, true},
		{"the named worker is silent", []string{"a"}, []string{"b"}, []string{"b"}, nil, false, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := &watch{job: job, bid: 5000, named: tc.named, live: tc.live, candidates: tc.cands, answered: map[string]bool{}}
			for _, a := range tc.answered {
				w.answered[a] = true
			}
			if got := w.ready(tc.firstQuote); got != tc.want {
				t.Fatalf("ready = %v, want %v", got, tc.want)
			}
		})
	}
}

func mint(t testing.TB, job string, msat int64) string {
	return invoicetest.Mint(t, invoicetest.Spec{Msat: msat, Description: invoice.Description(job)})
}

func mustPub(sk string) string {
	pk, _ := nostr.GetPublicKey(sk)
	return pk
}
