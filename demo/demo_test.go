package demo

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/sparecycles/sparecycles/nips/escrow"

	"github.com/sparecycles/sparecycles/internal/regtest"
)

func repoRoot(t testing.TB) string {
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	return root
}

func check(t *testing.T, rep Report, out *bytes.Buffer) {
	t.Helper()
	want := strings.ToLower(strings.Join(Page, " "))
	if got := strings.ToLower(strings.Join(strings.Fields(rep.Text), " ")); got != want {
		t.Fatalf("text %q, want %q\n%s", rep.Text, want, out)
	}
	if rep.AmountMsat <= 0 {
		t.Fatalf("nothing paid\n%s", out)
	}
	// both wallets hold invoices: the demo pays by escrow, locked before settled
	locked, settled := slices.Index(rep.Stages, "locked"), slices.Index(rep.Stages, "settled")
	if rep.Scheme != "escrow" || locked < 0 || settled < locked {
		t.Fatalf("scheme %q, stages %q: want escrow, locked then settled\n%s", rep.Scheme, rep.Stages, out)
	}
	if p, err := escrow.ParsePreimage(rep.Preimage); err != nil || !strings.Contains(out.String(), "stage    settled") {
		t.Fatalf("preimage %q (%v), or no settled line\n%s", rep.Preimage, err, out)
	} else if p.Hex() == "" {
		t.Fatal("empty preimage")
	}
	if paid := rep.Before.Customer - rep.After.Customer; paid != rep.AmountMsat+rep.FeeMsat {
		t.Fatalf("customer paid %d msat, want %d + %d fee\n%s", paid, rep.AmountMsat, rep.FeeMsat, out)
	}
	if got := rep.After.Worker - rep.Before.Worker; got != rep.AmountMsat {
		t.Fatalf("worker received %d msat, want %d\n%s", got, rep.AmountMsat, out)
	}
	checkStream(t, rep.Stream, out)
	checkPrivate(t, rep.Private, out)
	if rep.Review.Event == "" || rep.Review.Reviews != 1 || rep.Review.Rating != 5 {
		t.Fatalf("review %+v: want one paid review, rated 5, counted for the worker\n%s", rep.Review, out)
	}
}

// words is s lower-cased with its spaces and line breaks normalised: what OCR is compared on.
func words(s string) string { return strings.ToLower(strings.Join(strings.Fields(s), " ")) }

// checkStream: one part per page, in order, each with its page's text and a price; the client
// said each part on stderr with the running total; the balances moved by the parts' sum.
func checkStream(t *testing.T, s StreamReport, out *bytes.Buffer) {
	t.Helper()
	if len(s.Parts) != len(StreamPages) {
		t.Fatalf("stream: %d parts %+v, want %d\n%s", len(s.Parts), s.Parts, len(StreamPages), out)
	}
	var sum int64
	var want []string
	for i, p := range s.Parts {
		if p.Index != i+1 || words(p.Text) != words(StreamPages[i]) || p.AmountMsat <= 0 {
			t.Fatalf("stream part %d: %+v, want index %d, text %q, a price\n%s", i+1, p, i+1, StreamPages[i], out)
		}
		sum += p.AmountMsat
		tenths := (sum + 50) / 100 // the CLI rounds the running total to a tenth of a sat
		want = append(want, fmt.Sprintf("part %d/%d · %d.%d sat so far", i+1, len(StreamPages), tenths/10, tenths%10))
	}
	// a warning logged on the way would not fail the demo: only the progress lines are compared
	progress := slices.DeleteFunc(slices.Clone(s.Progress), func(l string) bool { return !strings.HasSuffix(l, " sat so far") })
	if !slices.Equal(progress, want) {
		t.Fatalf("stream: the client's progress lines %q, want %q\n%s", progress, want, out)
	}
	if s.AmountMsat != sum {
		t.Fatalf("stream: total %d msat, the parts sum to %d\n%s", s.AmountMsat, sum, out)
	}
	if s.Scheme != "escrow" {
		t.Fatalf("stream paid by %q, want escrow\n%s", s.Scheme, out)
	}
	if paid, got := s.Before.Customer-s.After.Customer, s.After.Worker-s.Before.Worker; paid != sum+s.FeeMsat || got != sum {
		t.Fatalf("stream: customer paid %d msat and worker received %d, want the parts' sum %d (+ %d fee)\n%s", paid, got, sum, s.FeeMsat, out)
	}
}

// checkPrivate: the request on the relay is encrypted (no input in the clear), the client
// decrypted the page's text, and the balances moved by the payment.
func checkPrivate(t *testing.T, p PrivateReport, out *bytes.Buffer) {
	t.Helper()
	if !p.Encrypted() || p.Tags.Find("p") == nil || p.Tags.Find("p")[1] != p.Worker {
		t.Fatalf("private request on the relay: tags %v, content %.80q: want [\"encrypted\"], a p tag for worker %s, no i tag\n%s", p.Tags, p.Content, p.Worker, out)
	}
	if strings.Contains(p.Content, "data:") || strings.Contains(strings.ToLower(p.Content), words(PrivatePage)) {
		t.Fatalf("private request content shows the input: %.200q", p.Content)
	}
	if words(p.Text) != words(PrivatePage) {
		t.Fatalf("private text %q, want %q\n%s", p.Text, PrivatePage, out)
	}
	if paid, got := p.Before.Customer-p.After.Customer, p.After.Worker-p.Before.Worker; p.AmountMsat <= 0 || paid != p.AmountMsat+p.FeeMsat || got != p.AmountMsat {
		t.Fatalf("private: customer paid %d msat and worker received %d, want %d (+ %d fee)\n%s", paid, got, p.AmountMsat, p.FeeMsat, out)
	}
}

// The demo's path with the binaries themselves, built and started as processes, over the
// ledger wallet: the text, the payment and the balances.
func TestDemoLedger(t *testing.T) {
	var out bytes.Buffer
	rep, err := Run(context.Background(), Options{Repo: repoRoot(t), Workdir: t.TempDir(), Out: &out})
	if err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	check(t, rep, &out)
	t.Log(out.String())
}

// The same over real Lightning: the customer's wallet service on alice's lnd, the worker's
// on bob's. `make demo-lightning` runs this test.
func TestRegtestDemo(t *testing.T) {
	net := regtest.Start(t)
	var out bytes.Buffer
	rep, err := Run(context.Background(), Options{
		Repo: repoRoot(t), Workdir: t.TempDir(), Out: &out,
		Customer: &LND{REST: net.Alice.RESTURL, Macaroon: net.Alice.Macaroon, TLSCert: net.Alice.TLSCert},
		Worker:   &LND{REST: net.Bob.RESTURL, Macaroon: net.Bob.Macaroon, TLSCert: net.Bob.TLSCert},
	})
	if err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	check(t, rep, &out)
	t.Log(out.String())
}
