package client

import (
	"context"
	"errors"
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
	w := &watch{job: job, bid: 5000}
	for _, q := range []Quote{
		{Worker: "expensive", AmountMsat: 4000, Bolt11: mint(t, job, 4000)},
		{Worker: "cheap", AmountMsat: 3000, Bolt11: mint(t, job, 3000)},
		{Worker: "greedy", AmountMsat: 9000, Bolt11: mint(t, job, 9000)},                      // over the bid
		{Worker: "liar", AmountMsat: 1000, Bolt11: mint(t, job, 2000)},                        // invoice ≠ quote
		{Worker: "other-job", AmountMsat: 100, Bolt11: mint(t, strings.Repeat("d", 64), 100)}, // binds another job
		{Worker: "garbage", AmountMsat: 100, Bolt11: "lnbc-not-an-invoice"},
	} {
		q.JobID, q.BidMsat = job, w.bid
		w.quotes = append(w.quotes, q)
	}
	best, refusals := w.best()
	if best == nil || best.Worker != "cheap" {
		t.Fatalf("best = %+v", best)
	}
	joined := strings.Join(refusals, "\n")
	for _, want := range []string{"greedy", "above the bid", "liar", "differs from the quoted", "other-job", "does not bind", "garbage", "not a valid BOLT11"} {
		if !strings.Contains(joined, want) {
			t.Errorf("refusals %q do not mention %q", joined, want)
		}
	}
}

func mint(t testing.TB, job string, msat int64) string {
	return invoicetest.Mint(t, invoicetest.Spec{Msat: msat, Description: invoice.Description(job)})
}

func mustPub(sk string) string {
	pk, _ := nostr.GetPublicKey(sk)
	return pk
}
